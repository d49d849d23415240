"""`charrnn classify`, and what `sample`, `score-sentence` and `eval` do on labelled runs (`charrnn.kinds` handlers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from charrnn.cli.common import SCORING_PRECISION_HELP, read_sentences
from charrnn.cli.display import err_console, load_run, summary_table
from charrnn.cli.inspect import refuse_options
from charrnn.core.errors import CharRNNError

THREADS_HELP = "CPU threads (default 1: fastest for a few texts, and safe on a busy machine)."


def register(app: typer.Typer) -> None:
    """Add `charrnn classify` to `app`."""
    app.command()(classify)


def classify(
    run_dir: Path = typer.Argument(..., help="A classifier or conditional language-model run (`charrnn train`)."),
    texts: list[str] | None = typer.Argument(None, help="Texts to classify (or --file, or stdin)."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Classify each line of this file."),
    top_k: int = typer.Option(3, "--top-k", "-k", help="Show the K most probable labels of each text."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array for scripts."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
    threads: int | None = typer.Option(None, help=THREADS_HELP),
    precision: str = typer.Option("fp32", help=SCORING_PRECISION_HELP),
) -> None:
    """Say which label each text carries: the top labels with P(label | text).

    A classifier reads it from its softmax; a conditional language model by Bayes' rule,
    P(label | text) ∝ P(text | label) P(label), with the labels' shares of its training data as P(label).
    """
    from charrnn import kinds

    if top_k < 1:
        raise CharRNNError(f"--top-k must be at least 1, got {top_k}.")
    handler = kinds.handler(run_dir, "classify")
    lines = [line.strip() for line in read_sentences(texts, file, "classify")]
    handler(run_dir, lines, {"top_k": top_k, "as_json": as_json, "device": device, "threads": threads,
                             "precision": precision})  # fmt: skip


def _load_labelled(run_dir: Path, device: str, threads: int | None) -> Any:
    from charrnn import kinds

    return load_run(run_dir, device, threads, kinds.kind_of_run(run_dir).name)


def classify_texts(run_dir: Path, texts: list[str], options: dict[str, Any]) -> None:
    """`charrnn classify` on a classifier or a conditional model: a table (or JSON) of the top labels of each text."""
    run = _load_labelled(run_dir, options["device"], options["threads"])
    results = run.classify(texts, precision=options["precision"])
    top_k = options["top_k"]
    if options["as_json"]:
        print(json.dumps([r.to_dict(top_k) for r in results], ensure_ascii=False, indent=1))
        return
    table = Table(title=f"P(label | text), top {top_k}", title_justify="left", box=None)
    table.add_column("text", no_wrap=False)
    for rank in range(min(top_k, len(run.labels))):
        table.add_column(f"#{rank + 1}", no_wrap=True)
    for result in results:
        table.add_row(result.text, *(f"{label} {p:.3f}" for label, p in result.top(top_k)))
    console = Console()
    if not console.is_terminal:
        console.width = 200  # one line per text in a pipe or a file
    console.print(table)


def evaluate_labelled(run_dir: Path, data: Path, options: dict[str, Any]) -> None:
    """`charrnn eval` on a labelled run: accuracy, macro-F1, per-label figures and the confusion matrix."""
    refuse_options(
        options, {"oov": "include", "oov_logprob": None, "batch_size": None, "bptt": None}, "a labelled run"
    )
    run = _load_labelled(run_dir, options["device"], options["threads"])
    fields = {name: options[name] for name in ("label_field", "text_field") if options[name] is not None}
    result = run.evaluate(data, **fields)
    if options["plot"] is not None:
        from charrnn.cli.plot import plot_confusion

        err_console().print(f"wrote {plot_confusion(result, options['plot'])}", highlight=False)
    if options["as_json"]:
        print(json.dumps({"data": str(data), **result.to_dict()}, ensure_ascii=False, indent=1))
        return
    console = Console()
    rows = [("data", str(data))]
    if result.examples:  # none when a conditional model ignores labels (--label-as none): nats/token only
        rows += [
            ("examples", f"{result.examples:,}"),
            ("accuracy", f"{result.accuracy:.4f}"),
            ("macro-F1", f"{result.macro_f1:.4f}"),
        ]
    for name, value in (result.extra or {}).items():
        rows.append((name.replace("_", " ").replace("per", "/"), f"{value:.4f}"))
    console.print(summary_table(rows, f"evaluation of {run_dir}"))
    if not result.examples:
        return
    per_label = Table(title="per label", title_justify="left")
    for column in ("label", "precision", "recall", "F1", "support"):
        per_label.add_column(column, justify="left" if column == "label" else "right")
    for scores in result.per_label:
        per_label.add_row(
            scores.label,
            f"{scores.precision:.3f}",
            f"{scores.recall:.3f}",
            f"{scores.f1:.3f}",
            f"{scores.support:,}",
        )
    console.print(per_label)
    console.print(confusion_table(result.labels, result.confusion))


def confusion_table(labels: list[str], matrix: list[list[int]]) -> Table:
    """The confusion matrix: one row per true label, one column per predicted label (headers cut to 4 characters)."""
    table = Table(title="confusion matrix (rows: true label, columns: predicted)", title_justify="left")
    table.add_column("true \\ predicted", style="bold", no_wrap=True)
    for label in labels:
        table.add_column(label[:4], justify="right", no_wrap=True)
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        cells = [
            Text(str(n), style="bold") if i == j else Text(str(n) if n else "·", style="" if n else "dim")
            for j, n in enumerate(row)
        ]
        table.add_row(label, *cells)
    return table


def sample_with_label(run_dir: Path, options: dict[str, Any]) -> None:
    """`charrnn sample` on a conditional model: --num texts of --label, or each of a label drawn from the prior.

    Each text ends at the model's `<eos>`; with labels drawn, each line is `label<TAB>text`.
    """
    if options["interactive"]:
        raise CharRNNError("--interactive is for language models without labels; give --label and --num instead.")
    run = _load_labelled(run_dir, options["device"], options["threads"])
    label = options["label"]
    if label is not None:
        run.label_index(label)  # an unknown label: one line listing the labels, before generating
    pairs = run.sample_with_labels(
        label, num=options["num"], prime=options["prime"], length=options["length"],
        temperature=options["temperature"], greedy=options["greedy"], top_k=options["top_k"],
        top_p=options["top_p"], seed=options["seed"],
    )  # fmt: skip
    for drawn, text in pairs:
        print(text if label is not None else f"{drawn}\t{text}", flush=True)


def score_with_label(
    run_dir: Path, texts: list[str], options: dict[str, Any], device: str, threads: int | None
) -> list[Any]:
    """`charrnn score-sentence --label L` on a conditional model: log P(text | L) of each text."""
    run = _load_labelled(run_dir, device, threads)
    label = options.pop("label")
    if label is None:
        raise CharRNNError(
            f"{run_dir} is conditioned on a label: give --label (one of {', '.join(run.labels)}) to score log P(text | label)."
        )
    return run.score(texts, label, **options)
