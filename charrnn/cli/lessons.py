"""`charrnn gradients` (gradient flow through time: a table, a sparkline, JSON or a plot) and `charrnn lesson`
(the adding problem and the copy task, trained by the engine, with their learning curve and verdict); `charrnn.lessons`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from charrnn.cli.display import err_console, training_session
from charrnn.core.errors import CharRNNError

SPARKS = "▁▂▃▄▅▆▇█"
SHOWN_DISTANCES = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def register(app: typer.Typer) -> None:
    """Add `gradients` and `lesson` to `app`."""
    from charrnn.cli.options import add_train_command, parameter

    app.command()(gradients)
    add_train_command(
        app,
        "lesson",
        parameter(
            "task",
            str | None,
            typer.Argument(None, help="adding (the default) or copy; not needed with --resume."),
        ),
        command="lesson",
        summary="Train a cell on a long-range task, the adding problem or the copy task, and say whether it "
        "solved it or stayed at the no-memory baseline.",
        default_out="checkpoints/lesson-<task>-<cell>-T<length>",
        tables="lesson, model, training",
        epilogue=lesson_epilogue,
    )


CURVE_ROWS = 12  # evaluations shown in the learning-curve table at most


def lesson_epilogue(result: Any) -> tuple[list[Any], dict[str, Any]]:
    """The learning curve against the baseline and the verdict, as lines to print and as --json figures."""
    from charrnn.lessons.run import SOLVED, STUCK_AT_BASELINE, lesson_report

    report = lesson_report(result.run_dir)
    curve = report.curve
    table = Table(
        title=f"{report.task} task, T = {report.length}, {report.cell}: validation against the no-memory "
        f"baseline {report.baseline:.4f}",
        title_justify="left",
    )
    for column in ("step", "loss", "loss / baseline", "solved"):
        table.add_column(column, justify="right")
    shown = (
        curve
        if len(curve) <= CURVE_ROWS
        else [curve[round(i * (len(curve) - 1) / (CURVE_ROWS - 1))] for i in range(CURVE_ROWS)]
    )
    for e in shown:
        solved = "-" if e.solved is None else f"{100 * e.solved:.0f}%"
        table.add_row(f"{e.step:,}", f"{e.loss:.4f}", f"{e.loss / report.baseline:.2f}", solved)
    ratios = [e.loss / report.baseline for e in curve]
    lines: list[Any] = [table]
    if ratios:
        lines.append(f"loss / baseline  {sparkline(ratios)}  (log scale, first to last evaluation)")
    if report.verdict == SOLVED:
        lines.append(
            Text.from_markup(
                f"[bold green]solved[/] at step {report.solved_at:,} (95% of the held-out sequences solved)"
            )
        )
    elif report.verdict == STUCK_AT_BASELINE:
        lines.append(
            Text.from_markup(
                "[bold red]stuck at the baseline[/]: the loss never fell below 0.9 x the no-memory baseline"
            )
        )
    else:
        lines.append(
            Text.from_markup(
                f"[bold yellow]{report.verdict}[/]: better than no memory, not yet 95% of sequences solved"
            )
        )
    return lines, {"lesson": report.to_dict()}


def sparkline(values: list[float], width: int = 48) -> str:
    """`values` as a line of block characters on a log scale (lowest ▁, highest █), at most `width` wide."""
    if not values:
        return ""
    count = min(width, len(values))
    picks = [values[round(i * (len(values) - 1) / max(count - 1, 1))] for i in range(count)]
    logs = [math.log10(v) if v > 0 and math.isfinite(v) else None for v in picks]
    known = [v for v in logs if v is not None]
    if not known:
        return " " * len(picks)
    low, high = min(known), max(known)
    span = high - low or 1.0
    return "".join(" " if v is None else SPARKS[round((v - low) / span * (len(SPARKS) - 1))] for v in logs)


def _horizon(flow: Any, layer: int) -> str:
    value = flow.memory_horizons[layer]
    return f"> {flow.horizon}" if value is None else str(value)


def _name(flow: Any, layer: int) -> str:
    name = flow.label or flow.cell
    return name if len(flow.hidden) == 1 else f"{name} layer {layer + 1}"


def flow_table(flows: list[Any]) -> Table:
    """mean ‖∂L_t/∂h_{t−k}‖ at a few distances k (rows), one column per flow and layer, and the memory horizons."""
    table = Table(title="mean ‖∂L_t/∂h_{t−k}‖ by distance k", title_justify="left")
    table.add_column("k", justify="right")
    columns = [(flow, layer) for flow in flows for layer in range(len(flow.hidden))]
    for flow, layer in columns:
        table.add_column(_name(flow, layer), justify="right")
    horizon = max(flow.horizon for flow in flows)
    for k in sorted({*(d for d in SHOWN_DISTANCES if d <= horizon), horizon}):
        cells = [f"{flow.hidden[layer][k]:.3g}" if k <= flow.horizon else "" for flow, layer in columns]
        table.add_row(str(k), *cells)
    table.add_row("memory horizon", *(_horizon(flow, layer) for flow, layer in columns), style="bold")
    return table


def gradients(
    run_dir: Path | None = typer.Argument(None, help="Language-model run directory (optional with --cells)."),
    text: Path | None = typer.Argument(None, help="Text file to measure on (default: the run's validation text)."),
    horizon: int = typer.Option(200, "--horizon", help="Largest distance k, in tokens."),
    positions: int = typer.Option(32, "--positions", help="Positions t of the text the norms are averaged over."),
    warmup: int = typer.Option(50, "--warmup", help="Tokens read before each window, to warm the state up."),
    untrained: bool = typer.Option(False, "--untrained", help="A freshly initialised model of the run's config."),
    cells: str | None = typer.Option(
        None,
        "--cells",
        help="Train one small model per cell (e.g. rnn,gru,lstm) at equal parameter count, compare.",
    ),
    minutes: float = typer.Option(3.0, "--minutes", help="--cells: training minutes per model."),
    corpus: Path | None = typer.Option(
        None, "--corpus", help="--cells: the text to train on (default: RUN's corpus, else Tiny Shakespeare)."
    ),
    out: Path = typer.Option(Path("checkpoints/gradients"), "--out", "-o", help="--cells: runs go to OUT/<cell>."),
    overwrite: bool = typer.Option(False, "--overwrite", help="--cells: replace runs already in OUT/<cell>."),
    plot: Path | None = typer.Option(None, "--plot", help="Also draw the curves (log scale) to this PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array of the curves for scripts."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
    threads: int | None = typer.Option(None, help="CPU threads (default: the free cores)."),
) -> None:
    """Gradient flow through time: mean ‖∂L_t/∂h_{t−k}‖ for k = 0 … --horizon, per layer, and the memory horizon."""
    from charrnn.core.runtime import set_inference_threads
    from charrnn.core.text import read_text
    from charrnn.lesson_runs import run_gradient_flow, train_cells

    if run_dir is None and cells is None:
        raise CharRNNError("Give a RUN directory to measure, or --cells rnn,gru,lstm to train and compare.")
    words = read_text(text) if text is not None else None
    measure = {"horizon": horizon, "positions": positions, "warmup": warmup, "untrained": untrained}
    if cells is None:
        set_inference_threads(threads, rows=positions)
        flows = [run_gradient_flow(run_dir, words, device=device, **measure)]
    else:
        names = [c.strip() for c in cells.split(",") if c.strip()]
        with training_session() as (stop, reporter):
            runs = train_cells(corpus, names, minutes, out, template=run_dir, overwrite=overwrite,
                               reporter=reporter, should_stop=stop, device=device, threads=threads)  # fmt: skip
        if stop():
            raise typer.Exit(130)
        set_inference_threads(threads, rows=positions)
        flows = []
        for cell, path in runs.items():
            flow = run_gradient_flow(path, words, device=device, **measure)
            flow.label = cell
            flows.append(flow)
    if plot is not None:
        from charrnn.cli.plot import plot_gradient_flows

        err_console().print(f"wrote {plot_gradient_flows(flows, plot)}", highlight=False)
    if as_json:
        print(json.dumps([flow.to_dict() for flow in flows], indent=1))
        return
    console = Console()
    console.print(flow_table(flows))
    width = max(len(_name(flow, layer)) for flow in flows for layer in range(len(flow.hidden)))
    for flow in flows:
        for layer, curve in enumerate(flow.hidden):
            console.print(
                f"{_name(flow, layer):<{width}}  k=0 {sparkline(curve)} k={flow.horizon}  "
                f"horizon {_horizon(flow, layer)}",
                highlight=False,
            )
    console.print(
        f"averaged over {flows[0].positions} positions; memory horizon: the first k where the gradient "
        "falls below 1% of its value at k = 0",
        highlight=False,
        style="dim",
    )
