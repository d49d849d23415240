"""Loss curves of one or more runs, and a classifier's confusion matrix, as PNGs (matplotlib, the optional extra `charrnn[plot]`).

Training loss is the mean over each logging window and validation loss the mean over the held-out
stream, both in nats/token (natural-log cross-entropy); at char level the right axis shows the same
values in bits/char (nats / ln 2).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from charrnn.core import rundir
from charrnn.core.errors import CharRNNError
from charrnn.core.runinfo import run_facts
from charrnn.kinds import CONFIG_CLASSES

INSTALL_HINT = "plotting needs matplotlib: pip install 'charrnn[plot]' (or pip install matplotlib)"
FIGURE_SIZE = (9.0, 5.5)  # inches; at DPI this is the PNG's size in pixels
DPI = 100


TIME_UNITS = ((120.0, "seconds", 1.0), (7200.0, "minutes", 60.0), (math.inf, "hours", 3600.0))


def time_unit(longest_seconds: float) -> tuple[str, float]:
    """(unit name, seconds per unit) that keeps a time axis of `longest_seconds` readable."""
    return next((name, size) for limit, name, size in TIME_UNITS if longest_seconds < limit)


def _series(records: list[dict], key: str, x: str, seconds: float = 1.0) -> tuple[list[float], list[float]]:
    """(x values, losses) of the records that have `key`, in step order; x is the step or elapsed time / `seconds`."""
    xs, ys = [], []
    for record in records:
        value = record.get(key)
        position = record.get("step") if x == "step" else record.get("elapsed")
        if isinstance(value, int | float) and math.isfinite(value) and isinstance(position, int | float):
            xs.append(float(position) if x == "step" else position / seconds)
            ys.append(float(value))
    return xs, ys


def _labels(run_dirs: list[Path]) -> list[str]:
    """Short legend names: each folder's name, or its whole path where two names clash."""
    names = [p.name for p in run_dirs]
    return [name if names.count(name) == 1 else str(path) for name, path in zip(names, run_dirs, strict=True)]


def plot_confusion(report: Any, out: str | Path) -> Path:
    """Draw a `ClassificationReport`'s confusion matrix, each row as shares of its true label, to a PNG."""
    plt = pyplot()
    labels, matrix = report.labels, report.confusion
    shares = [[n / max(sum(row), 1) for n in row] for row in matrix]
    side = min(max(4.0, 0.45 * len(labels) + 2.0), 30.0)
    figure, axes = plt.subplots(figsize=(side + 1.0, side), dpi=DPI)
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(labels)), labels, rotation=90)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    if len(labels) <= 30:
        for i, row in enumerate(matrix):
            for j, n in enumerate(row):
                if n:
                    colour = "white" if shares[i][j] > 0.5 else "black"
                    axes.text(j, i, str(n), ha="center", va="center", fontsize="x-small", color=colour)
    figure.colorbar(image, ax=axes, label="share of the true label's examples")
    axes.set_title(f"confusion matrix: accuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f}")
    return save_png(plt, figure, out)


def plot_runs(run_dirs: list[str | Path], out: str | Path, x: str = "step", grad_norm: bool = False) -> Path:
    """Draw training (thin) and validation (thick, dots) loss of each run against steps or time; write a PNG.

    With `grad_norm`, a second panel below shows each logging window's mean (solid) and largest
    (thin) gradient norm before clipping, on a log scale, with the run's --clip threshold dotted.
    """
    if x not in ("step", "time"):
        raise CharRNNError(f"--x must be step or time, got {x!r}.")
    if not run_dirs:
        raise CharRNNError("Give at least one run directory to plot.")
    plt = pyplot()
    paths = [Path(p) for p in run_dirs]
    levels = [run_facts(p, CONFIG_CLASSES)["level"] for p in paths]  # also checks each is a run directory
    metrics = [rundir.read_metrics(p) for p in paths]
    elapsed = [r["elapsed"] for rs in metrics for r in rs if isinstance(r.get("elapsed"), int | float)]
    unit, seconds = time_unit(max(elapsed, default=0.0))
    if grad_norm:
        figure, (axes, norms) = plt.subplots(
            2, 1, sharex=True, figsize=(FIGURE_SIZE[0], FIGURE_SIZE[1] * 1.4), dpi=DPI, height_ratios=(2, 1)
        )
    else:
        figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=DPI)
    plotted = 0
    for index, (records, label) in enumerate(zip(metrics, _labels(paths), strict=True)):
        color = f"C{index % 10}"
        train_x, train_y = _series(records, "train_loss", x, seconds)
        val_x, val_y = _series(records, "val_loss", x, seconds)
        if train_x:
            axes.plot(train_x, train_y, color=color, linewidth=1.0, alpha=0.6, label=f"{label} train")
        if val_x:
            axes.plot(
                val_x, val_y, color=color, linewidth=2.2, marker="o", markersize=3.5, label=f"{label} validation"
            )
        plotted += bool(train_x or val_x)
    if not plotted:
        plt.close(figure)
        raise CharRNNError(f"No losses logged yet in {', '.join(map(str, paths))} (metrics.jsonl is empty).")
    x_label = "training step" if x == "step" else f"training time ({unit})"
    if grad_norm:
        _plot_grad_norms(plt, figure, norms, paths, metrics, x, seconds)
        norms.set_xlabel(x_label)
    else:
        axes.set_xlabel(x_label)
    axes.set_ylabel("cross-entropy loss (nats/token)" if all(levels) else "loss")
    if all(level == "char" for level in levels):
        ln2 = math.log(2.0)
        right = axes.secondary_yaxis("right", functions=(lambda v: v / ln2, lambda v: v * ln2))
        right.set_ylabel("bits/char")
    axes.set_title("training and validation loss")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return save_png(plt, figure, out)


def _plot_grad_norms(
    plt: Any, figure: Any, axes: Any, paths: list[Path], metrics: list[list[dict]], x: str, seconds: float
) -> None:
    """The gradient-norm panel of `plot_runs`: mean and max ‖g‖ per logging window, and the clip threshold."""
    plotted = 0
    for index, (path, records, label) in enumerate(zip(paths, metrics, _labels(paths), strict=True)):
        color = f"C{index % 10}"
        mean_x, mean_y = _series(records, "grad_norm_mean", x, seconds)
        max_x, max_y = _series(records, "grad_norm_max", x, seconds)
        if not mean_x:
            continue
        axes.plot(mean_x, mean_y, color=color, linewidth=1.5, label=f"{label} mean ‖g‖")
        axes.plot(max_x, max_y, color=color, linewidth=0.8, alpha=0.5, label=f"{label} max ‖g‖")
        clip = rundir.read_run_json(path, "plot").get("training", {}).get("clip")
        if isinstance(clip, int | float):
            axes.axhline(clip, color=color, linestyle=":", linewidth=1.0, label=f"{label} --clip {clip:g}")
        plotted += 1
    if not plotted:
        plt.close(figure)
        raise CharRNNError(
            f"No gradient norms logged in {', '.join(map(str, paths))} (runs trained before charrnn logged them)."
        )
    axes.set_yscale("log")
    axes.set_ylabel("gradient norm before clipping")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")


def pyplot() -> Any:
    """matplotlib.pyplot drawing to files only, or a one-line error saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise CharRNNError(INSTALL_HINT) from None
    return plt


def save_png(plt: Any, figure: Any, out: str | Path) -> Path:
    """Write `figure` to the PNG `out` (a one-line error when it cannot) and close it."""
    figure.tight_layout()
    out = Path(out)
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(figure)
    rundir.atomic_write(out, buffer.getvalue())  # temp + rename: never half a PNG, never through a link
    return out


def plot_gradient_flows(flows: list[Any], out: str | Path) -> Path:
    """Draw ‖∂L_t/∂h_{t−k}‖ against k (log scale) for each `GradientFlow` and layer; write a PNG.

    One colour per flow; the top layer solid, lower layers dashed; a dot marks each memory horizon
    (where the curve falls below 1% of its value at k = 0).
    """
    plt = pyplot()
    figure, axes = plt.subplots(figsize=FIGURE_SIZE, dpi=DPI)
    for index, flow in enumerate(flows):
        color = f"C{index % 10}"
        layers = len(flow.hidden)
        for layer, curve in enumerate(flow.hidden):
            top = layer == layers - 1
            name = flow.label or flow.cell
            label = name if layers == 1 else f"{name} layer {layer + 1}"
            points = [(k, v) for k, v in enumerate(curve) if v > 0 and math.isfinite(v)]
            if not points:
                continue
            axes.plot(*zip(*points, strict=True), color=color, linewidth=2.0 if top else 1.0,
                      linestyle="-" if top else "--", label=label)  # fmt: skip
            horizon = flow.memory_horizons[layer]
            if horizon is not None and curve[horizon] > 0:
                axes.plot([horizon], [curve[horizon]], marker="o", color=color, markersize=5)
    axes.set_yscale("log")
    axes.set_xlabel("distance k (tokens back)")
    axes.set_ylabel("mean ‖∂L_t / ∂h_{t−k}‖")
    axes.set_title("gradient of the loss with respect to the hidden state k steps earlier")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    return save_png(plt, figure, out)
