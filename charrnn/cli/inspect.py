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
    """List the runs under DIRECTORY, grouped by kind and level, best validation loss first within a group."""
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
    console = Console()
    if not console.is_terminal:
        console.width = 200  # one line per run in a pipe or a file
    for number, (title, group) in enumerate(_groups(facts)):
        if number:
            console.print()
        console.print(_runs_table(title, group, directory, wide=console.width >= 110))


def _groups(facts: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The runs by kind and level (losses compare only within one), in the order `facts` has them."""
    from charrnn.kinds import KINDS

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for f in facts:
        groups.setdefault((f["kind"], f["level"] or "-"), []).append(f)
    order = {name: i for i, name in enumerate(KINDS)}
    titled = []
    for (kind, level), group in sorted(groups.items(), key=lambda item: (order.get(item[0][0], 99), item[0][1])):
        titled.append((f"{KINDS[kind].title if kind in KINDS else kind}, {level} level", group))
    return titled


def _runs_table(title: str, group: list[dict[str, Any]], directory: Path, wide: bool) -> Table:
    """One group's table: run, steps, best validation in its level's unit (bits/char at char level, else
    perplexity); more columns on a wide terminal."""
    table = Table(title=title, title_justify="left", box=None)
    unit = "best bits/char" if group[0]["level"] == "char" else "best perplexity"
    columns = ["run", "steps", unit] + (["nats/token", "params", "updated (UTC)"] if wide else ["updated"])
    for column in columns:
        table.add_column(column, justify="left" if column in ("run", "updated", "updated (UTC)") else "right")
    table.columns[0].overflow = "fold"
    for f in group:
        if f["best_val_bits_per_char"] is not None:
            best = f"{f['best_val_bits_per_char']:.3f}"
        else:
            best = f"{f['best_val_perplexity']:,.1f}" if f["best_val_perplexity"] is not None else "-"
        updated = (f["updated"] or "-")[: 16 if wide else 10].replace("T", " ")
        row = [_relative(f["run_dir"], directory), _number(f["steps"]), best]
        row += [_number(f["best_val_loss"]), _number(f["parameters"]), updated] if wide else [updated]
        table.add_row(*row)
    return table


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
        ("run", str(run_dir)),
        ("file", str(file)),
        ("tokens", _tokens_counted(result)),
        ("<unk> tokens", f"{result.unk:,} (--oov {result.oov})"),
        ("total log P", f"{result.logprob:.2f} nats"),
        ("cross-entropy", f"{result.nats_per_token:.4f} nats/token"),
    ]
    if result.bits_per_char is not None:
        rows.append(("bits/char", f"{result.bits_per_char:.4f}"))
    rows += [("perplexity", f"{result.perplexity:.3f}"), ("batches", f"{result.batch_size} x bptt {result.bptt}")]
    Console().print(summary_table(rows, "evaluation"))


def _tokens_counted(result: Any) -> str:
    """The predicted tokens, and why the file has more: each row's first token has no context to predict it from."""
    text = f"{result.tokens:,}" + (f" ({result.skipped:,} <unk> skipped)" if result.skipped else "")
    unpredicted = result.file_tokens - result.tokens - result.skipped
    if unpredicted > 0:
        left = result.file_tokens % result.batch_size
        why = f"the first token of each of the {result.batch_size} rows is not predicted"
        why += (
            (", the last token does" if left == 1 else f", the last {left} tokens do") + " not fill a row"
            if left
            else ""
        )
        text += f" predicted of {result.file_tokens:,} in the file: {why}"
    return text


def plot(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run directories, overlaid."),
    out: Path = typer.Option(Path("curves.png"), "--out", "-o", help="PNG file to write."),
    x: str = typer.Option("step", "--x", help="Horizontal axis: step or time (training time)."),
) -> None:
    """Plot training and validation loss of runs to a PNG (needs matplotlib: pip install 'charrnn\\[plot]')."""
    from charrnn.cli.plot import plot_runs

    written = plot_runs(run_dirs, out, x)
    err_console().print(f"wrote {written}", highlight=False)
