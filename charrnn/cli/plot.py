"""Loss curves of one or more runs as a PNG (matplotlib, the optional extra `charrnn[plot]`).

Training loss is the mean over each logging window and validation loss the mean over the held-out
stream, both in nats/token (natural-log cross-entropy); at char level the right axis shows the same
values in bits/char (nats / ln 2).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

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


def plot_runs(run_dirs: list[str | Path], out: str | Path, x: str = "step") -> Path:
    """Draw training (thin) and validation (thick, dots) loss of each run against steps or time; write a PNG."""
    if x not in ("step", "time"):
        raise CharRNNError(f"--x must be step or time, got {x!r}.")
    if not run_dirs:
        raise CharRNNError("Give at least one run directory to plot.")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise CharRNNError(INSTALL_HINT) from None
    paths = [Path(p) for p in run_dirs]
    levels = [run_facts(p, CONFIG_CLASSES)["level"] for p in paths]  # also checks each is a run directory
    metrics = [rundir.read_metrics(p) for p in paths]
    elapsed = [r["elapsed"] for rs in metrics for r in rs if isinstance(r.get("elapsed"), int | float)]
    unit, seconds = time_unit(max(elapsed, default=0.0))
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
    axes.set_xlabel("training step" if x == "step" else f"training time ({unit})")
    axes.set_ylabel("cross-entropy loss (nats/token)")
    if all(level == "char" for level in levels):
        ln2 = math.log(2.0)
        right = axes.secondary_yaxis("right", functions=(lambda v: v / ln2, lambda v: v * ln2))
        right.set_ylabel("bits/char")
    axes.set_title("training and validation loss")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    out = Path(out)
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(figure)
    rundir.atomic_write(out, buffer.getvalue())  # temp + rename: never half a PNG, never through a link
    return out
