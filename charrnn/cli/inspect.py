"""`charrnn info`, `charrnn runs`, `charrnn eval`: look at trained runs and measure them on a file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from charrnn.cli.common import OOV_HELP, OOV_LOGPROB_HELP
from charrnn.cli.display import clipped_text, err_console, format_seconds, load_run, out_console, summary_table


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


def _loss(loss: float | None, level: str | None) -> str:
    """A validation loss in nats/token with bits/char (char level) or perplexity (nats/text for a classifier)."""
    if loss is None or not math.isfinite(loss):
        return "-"
    if level is None:  # a loss of its own kind (a lesson's squared error)
        return f"{loss:.4f}"
    if level == "label":
        return f"{loss:.4f} nats/text (perplexity {math.exp(min(loss, 700)):.2f} over the labels)"
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
    level = facts["level"]
    from charrnn.kinds import KINDS

    kind = KINDS[facts["kind"]].title
    seconds = facts["seconds_trained"]
    labels = facts.get("labels")
    label_rows = []
    if labels:
        from charrnn.labelled.data import label_summary

        label_rows = [("labels", label_summary(labels, most=1000) + " (training examples)")]
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
        ("best validation", _loss(facts["best_val_loss"], facts.get("loss_level") or level)),
        ("last validation", _loss(facts["last_val_loss"], facts.get("loss_level") or level)),
        ("gradient norm", clipped_text(facts["clipped_share"])),
        ("device / precision", f"{facts['device']} / {facts['precision']}"),
        ("charrnn version", str(facts["charrnn_version"])),
        ("corpus", str(facts["corpus"] or "-")),
        *label_rows,
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
    out_console().print(summary_table(info_rows(facts), f"charrnn run {run_dir}"))


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
        err_console().print(f"skipped: {problem}", style="yellow")
    if as_json:
        print(json.dumps(facts, ensure_ascii=False, indent=1))
        return
    if not facts:
        err_console().print(f"no charrnn runs under {directory}")
        return
    console = out_console()
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
    run_dir: Path = typer.Argument(
        ..., help="Run directory written by `charrnn train` (a language model, classifier or conditional model)."
    ),
    file: Path = typer.Argument(
        ..., help="A language model: a UTF-8 text file, evaluated as one stream. A labelled run: labelled data."
    ),
    oov: str = typer.Option("include", "--oov", help=OOV_HELP + " Default include: the validation loss."),
    oov_logprob: float | None = typer.Option(None, "--oov-logprob", help=OOV_LOGPROB_HELP),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Parallel streams (default: the run's)."),
    bptt: int | None = typer.Option(None, "--bptt", help="Tokens per chunk (default: the run's)."),
    label_field: str | None = typer.Option(
        None, "--label-field", help="Labelled data: the label's TSV column or JSONL key (default: the run's)."
    ),
    text_field: str | None = typer.Option(
        None, "--text-field", help="Labelled data: the text's TSV column or JSONL key (default: the run's)."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Labelled runs: also draw the confusion matrix to this PNG (needs matplotlib)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object for scripts."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
    threads: int | None = typer.Option(
        None, help="CPU threads (default 1; try your core count on an idle machine)."
    ),
) -> None:
    """Measure a run on data: a language model's cross-entropy, perplexity and bits/char of a whole file, counted as
    validation counts it; a classifier's (or conditional model's) accuracy, macro-F1 and confusion matrix."""
    from charrnn import kinds

    options = {name: value for name, value in locals().items() if name not in ("run_dir", "file", "kinds")}
    kinds.handler(run_dir, "eval")(run_dir, file, options)


def refuse_options(options: dict[str, Any], defaults: dict[str, Any], what: str) -> None:
    """A one-line error for an option given a value other than its default where it does not apply."""
    from charrnn.core.errors import CharRNNError

    for name, default in defaults.items():
        if options[name] != default:
            flag = "--" + name.replace("_", "-")
            raise CharRNNError(f"{flag} does not apply to {what}; drop it.")


def evaluate_language_model(run_dir: Path, file: Path, options: dict[str, Any]) -> None:
    """`charrnn eval` on a language model: the whole file read as validation reads it."""
    from charrnn.core.scoring import check_oov

    refuse_options(options, {"label_field": None, "text_field": None, "plot": None}, "a language model")
    oov, oov_logprob = options["oov"], options["oov_logprob"]
    check_oov(oov, oov_logprob)
    result = load_run(run_dir, options["device"], options["threads"], "lm").evaluate_file(
        file, batch_size=options["batch_size"], bptt=options["bptt"], oov=oov, oov_logprob=oov_logprob
    )
    if result.unk and oov != "skip":
        err_console().print(
            f"note: {result.unk:,} <unk> token(s) in {file}, counted with --oov {oov}", style="yellow"
        )
    if options["as_json"]:
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
    out_console().print(summary_table(rows, "evaluation"))


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
    grad_norm: bool = typer.Option(
        False, "--grad-norm", help="Add a panel of the gradient norm before clipping (mean and max per window)."
    ),
) -> None:
    """Plot training and validation loss of runs to a PNG (needs matplotlib: pip install 'charrnn\\[plot]')."""
    from charrnn.cli.plot import plot_runs

    written = plot_runs(run_dirs, out, x, grad_norm)
    err_console().print(f"wrote {written}", highlight=False)
