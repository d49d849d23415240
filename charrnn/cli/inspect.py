"""`charrnn info`, `charrnn runs`, `charrnn eval`: look at trained runs and measure them on a file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from charrnn.cli.common import OOV_HELP, OOV_LOGPROB_HELP
from charrnn.cli.display import err_console, format_seconds, load_run, summary_table


def register(app: typer.Typer) -> None:
    """Add the inspection commands to `app`."""
    app.command()(info)
    app.command()(runs)
    app.command("eval")(evaluate)
    app.command()(plot)


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _loss(loss: float | None, level: str) -> str:
    """A validation loss in nats/token with bits/char (char level) or perplexity."""
    if loss is None or not math.isfinite(loss):
        return "-"
    extra = (
        f"{loss / math.log(2.0):.3f} bits/char"
        if level == "char"
        else f"perplexity {math.exp(min(loss, 700)):.1f}"
    )
    return f"{loss:.4f} nats/token ({extra})"


def info_rows(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of `charrnn info`'s table."""
    vocab = facts["vocab_size"]
    vocab_text = (
        " / ".join(_number(v) for v in vocab) + " (source / target)" if isinstance(vocab, list) else _number(vocab)
    )
    level = facts["level"] or ""
    from charrnn.kinds import KINDS

    kind = KINDS[facts["kind"]].title
    seconds = facts["seconds_trained"]
    return [
        ("run", facts["run_dir"]),
        ("kind", kind),
        ("level", level or "-"),
        ("vocabulary", vocab_text),
        ("parameters", _number(facts["parameters"])),
        (
            "model",
            f"{facts['cell']}, {facts['layers']} layer(s) x {facts['hidden']} hidden, embed {facts['embed']}",
        ),
        ("steps", _number(facts["steps"])),
        ("epochs", _number(facts["epochs"], 2)),
        ("tokens seen", _number(facts["tokens_seen"])),
        (
            "time trained",
            f"{format_seconds(seconds)} wall clock, all sessions" if isinstance(seconds, int | float) else "-",
        ),
        ("best validation", _loss(facts["best_val_loss"], level)),
        ("last validation", _loss(facts["last_val_loss"], level)),
        ("device / precision", f"{facts['device']} / {facts['precision']}"),
        ("charrnn version", str(facts["charrnn_version"])),
        ("corpus", str(facts["corpus"] or "-")),
        ("created", str(facts["created"] or "-")),
        ("updated", str(facts["updated"] or "-")),
    ]


def info(
    run_dir: Path = typer.Argument(
        ..., help="Run directory written by `charrnn train` or `charrnn seq2seq train`."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object for scripts."),
) -> None:
    """Describe a run: level, vocabulary, size, training progress, best validation loss, versions."""
    from charrnn.core.runinfo import run_facts
    from charrnn.kinds import CONFIG_CLASSES

    facts = run_facts(run_dir, CONFIG_CLASSES)
    if as_json:
        print(json.dumps(facts, ensure_ascii=False, indent=1))
        return
    Console().print(summary_table(info_rows(facts), f"charrnn run {run_dir}"))


def runs(
    directory: Path = typer.Argument(Path("checkpoints"), help="Folder searched for run directories."),
    sort: str = typer.Option(
        "loss", "--sort", help="loss (best validation, lowest first), steps, updated or path."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array for scripts."),
) -> None:
    """List the runs under DIRECTORY, one line each, best validation loss first."""
    from charrnn.core.runinfo import list_runs
    from charrnn.kinds import CONFIG_CLASSES

    facts, problems = list_runs(directory, CONFIG_CLASSES, sort)
    for problem in problems:
        err_console().print(f"[yellow]skipped: {problem}[/]", highlight=False)
    if as_json:
        print(json.dumps(facts, ensure_ascii=False, indent=1))
        return
    if not facts:
        err_console().print(f"no charrnn runs under {directory}")
        return
    table = Table(title=f"runs under {directory} (validation loss in nats/token)", title_justify="left", box=None)
    for column in ("run", "kind", "level", "params", "steps", "best val", "bpc / ppl", "updated (UTC)"):
        left = column in ("run", "kind", "level", "updated (UTC)")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for f in facts:
        unit = (
            _number(f["best_val_bits_per_char"], 3) + " bpc"
            if f["best_val_bits_per_char"] is not None
            else (_number(f["best_val_perplexity"], 1) + " ppl" if f["best_val_perplexity"] is not None else "-")
        )
        table.add_row(
            _relative(f["run_dir"], directory), f["kind"], f["level"] or "-", _number(f["parameters"]), _number(f["steps"]),
            _number(f["best_val_loss"]), unit, (f["updated"] or "-")[:16].replace("T", " "),
        )  # fmt: skip
    console = Console()
    if not console.is_terminal:
        console.width = 200  # one line per run in a pipe or a file
    console.print(table)


def _relative(path: str, directory: Path) -> str:
    """`path` relative to `directory` when it lies below it ("." for the directory itself)."""
    try:
        return str(Path(path).relative_to(directory))
    except ValueError:
        return path


def evaluate(
    run_dir: Path = typer.Argument(..., help="Language-model run directory written by `charrnn train`."),
    file: Path = typer.Argument(..., help="UTF-8 text file, evaluated as one stream."),
    oov: str = typer.Option("include", "--oov", help=OOV_HELP + " Default include: the validation loss."),
    oov_logprob: float | None = typer.Option(None, "--oov-logprob", help=OOV_LOGPROB_HELP),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Parallel streams (default: the run's)."),
    bptt: int | None = typer.Option(None, "--bptt", help="Tokens per chunk (default: the run's)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object for scripts."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
    threads: int | None = typer.Option(
        None, help="CPU threads (default 1; try your core count on an idle machine)."
    ),
) -> None:
    """Cross-entropy, perplexity and bits/char of a whole file, counted as training's validation counts it."""
    from charrnn.core.scoring import check_oov

    check_oov(oov, oov_logprob)
    result = load_run(run_dir, device, threads, "lm").evaluate_file(
        file, batch_size=batch_size, bptt=bptt, oov=oov, oov_logprob=oov_logprob
    )
    if result.unk and oov != "skip":
        err_console().print(
            f"[yellow]note: {result.unk:,} <unk> token(s) in {file}, counted with --oov {oov}[/]", highlight=False
        )
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
        return
    rows = [
        ("file", str(file)),
        ("tokens", f"{result.tokens:,}" + (f" ({result.skipped:,} <unk> skipped)" if result.skipped else "")),
        ("<unk> tokens", f"{result.unk:,} (--oov {result.oov})"),
        ("total log P", f"{result.logprob:.2f} nats"),
        ("cross-entropy", f"{result.nats_per_token:.4f} nats/token"),
    ]
    if result.bits_per_char is not None:
        rows.append(("bits/char", f"{result.bits_per_char:.4f}"))
    rows += [("perplexity", f"{result.perplexity:.3f}"), ("batches", f"{result.batch_size} x bptt {result.bptt}")]
    Console().print(summary_table(rows, f"evaluation of {run_dir}"))


def plot(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run directories, overlaid."),
    out: Path = typer.Option(Path("curves.png"), "--out", "-o", help="PNG file to write."),
    x: str = typer.Option("step", "--x", help="Horizontal axis: step or time (training time)."),
) -> None:
    """Plot training and validation loss of runs to a PNG (needs matplotlib: pip install 'charrnn\\[plot]')."""
    from charrnn.cli.plot import plot_runs

    written = plot_runs(run_dirs, out, x)
    err_console().print(f"wrote {written}", highlight=False)
