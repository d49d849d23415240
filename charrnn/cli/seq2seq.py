"""`charrnn seq2seq train|translate|eval`: thin typer commands over `charrnn.api`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from charrnn.cli.common import SCORING_PRECISION_HELP, read_sentences
from charrnn.cli.display import attention_table, err_console, load_run, out_console, summary_table
from charrnn.cli.options import add_train_command, parameter
from charrnn.core.errors import CharRNNError

seq2seq_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Encoder–decoder with attention: train on sentence pairs, translate, evaluate (BLEU).",
)

add_train_command(
    seq2seq_app,
    "seq2seq",
    parameter(
        "pairs",
        Path | None,
        typer.Argument(None, help="TSV of source<TAB>target lines (default: the bundled Multi30k de-en slice)."),
    ),
    summary="Train an encoder–decoder on sentence pairs (teacher forcing) and save it to a run directory.",
    default_out="checkpoints/<pairs>-<attention>",
    tables="source_tokenizer, target_tokenizer, model, training",
)


DECODING_THREADS_HELP = (
    "CPU threads (default: 1 for a few sentences; the free cores when many are decoded as one batch)."
)


def _load_translation(run_dir: Path, device: str, threads: int | None):
    """The seq2seq model in RUN_DIR (see `charrnn.cli.display.load_run`)."""
    return load_run(run_dir, device, threads, "seq2seq")


@seq2seq_app.command("translate")
def translate_command(
    run_dir: Path = typer.Argument(..., help="Run directory written by `charrnn seq2seq train`."),
    texts: list[str] | None = typer.Argument(None, help="Sentences to translate (or --file, or stdin)."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Translate each line of this file."),
    beam: int = typer.Option(1, "--beam", "-k", help="Beam width (1: greedy)."),
    max_length: int | None = typer.Option(None, help="Most target tokens per sentence (default 2 x source + 10)."),
    length_penalty: float = typer.Option(1.0, help="Rank beams by log P / length ** this (0: raw log P)."),
    show_attention: bool = typer.Option(
        False, "--show-attention", help="Print each attention matrix as a heatmap."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array (text, tokens, scores, attention)."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
    threads: int | None = typer.Option(None, help=DECODING_THREADS_HELP),
) -> None:
    """Translate sentences with a trained model: one output line per input line."""
    from charrnn.core.runtime import set_inference_threads
    from charrnn.seq2seq.decoding import TranslateSettings, decoder_rows

    TranslateSettings(beam=beam, max_length=max_length, length_penalty=length_penalty).validate()
    lines = [line.strip() for line in read_sentences(texts, file, "translate")]
    run = _load_translation(run_dir, device, threads)
    set_inference_threads(threads, rows=decoder_rows(len(lines), beam))
    if show_attention and run.config.model.attention == "none":
        raise CharRNNError(f"{run_dir} was trained with --attention none; it has no attention to show.")
    results = run.translate(
        lines, beam, max_length=max_length, length_penalty=length_penalty, with_attention=show_attention
    )
    if as_json:
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=1))
        return
    console = out_console()
    for result in results:
        if show_attention and result.attention is not None:
            console.print(result.source, style="bold")
            console.print(attention_table(result.source_tokens, result.tokens, result.attention))
            console.print(result.text)
        else:
            print(result.text, flush=True)
        if not result.finished:
            err_console().print(f"stopped at the length limit: {result.source!r}", style="yellow")


@seq2seq_app.command("eval")
def eval_command(
    run_dir: Path = typer.Argument(..., help="Run directory written by `charrnn seq2seq train`."),
    pairs: Path | None = typer.Argument(None, help="TSV of source<TAB>reference lines (or --src/--tgt)."),
    src: Path | None = typer.Option(None, "--src", help="Source-side file of parallel files."),
    tgt: Path | None = typer.Option(None, "--tgt", help="Reference file, line-aligned with --src."),
    beam: int = typer.Option(1, "--beam", "-k", help="Beam width (1: greedy)."),
    max_length: int | None = typer.Option(None, help="Most target tokens per sentence (default 2 x source + 10)."),
    length_penalty: float = typer.Option(1.0, help="Rank beams by log P / length ** this."),
    limit: int | None = typer.Option(None, help="Evaluate only the first N pairs."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the translations here, one per line."),
    per_sentence: bool = typer.Option(False, "--per-sentence", help="Show each sentence's translation and log P."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures (and per-sentence detail) as JSON."),
    skip_malformed: bool = typer.Option(False, "--skip-malformed", help="Skip malformed TSV lines."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
    threads: int | None = typer.Option(None, help=DECODING_THREADS_HELP),
    precision: str = typer.Option("fp32", help=SCORING_PRECISION_HELP),
) -> None:
    """Corpus BLEU (sacrebleu, detokenised, cased), exact match and log P(reference | source) per sentence."""
    from charrnn.core.rundir import atomic_write
    from charrnn.core.runtime import set_inference_threads
    from charrnn.seq2seq.decoding import TranslateSettings, decoder_rows
    from charrnn.seq2seq.pairs import read_pairs

    TranslateSettings(beam=beam, max_length=max_length, length_penalty=length_penalty).validate()
    if limit is not None and limit < 1:
        raise CharRNNError(f"--limit must be at least 1, got {limit}.")
    run = _load_translation(run_dir, device, threads)
    corpus = read_pairs(pairs, src, tgt, skip_malformed=skip_malformed)
    if corpus.skipped_empty:
        err_console().print(
            f"skipped {corpus.skipped_empty} pair(s) with an empty source or target", style="yellow"
        )
    if corpus.malformed_lines:
        err_console().print(f"skipped {len(corpus.malformed_lines)} malformed line(s)", style="yellow")
    sources, references = corpus.sources[:limit], corpus.targets[:limit]
    set_inference_threads(threads, rows=decoder_rows(len(sources), beam))
    result = run.evaluate(
        sources, references, beam, max_length=max_length, length_penalty=length_penalty, precision=precision
    )
    if output is not None:
        atomic_write(output, ("\n".join(result.translations) + "\n").encode("utf-8"))
    if as_json:
        payload = result.summary()
        if per_sentence:
            payload["sentences"] = [
                {"source": s, "reference": r, "translation": h, "logprob": lp}
                for s, r, h, lp in zip(
                    sources, references, result.translations, result.reference_logprobs, strict=True
                )
            ]
        print(json.dumps(payload, ensure_ascii=False, indent=1))
        return
    console = out_console()
    if per_sentence:
        table = Table(title="per sentence")
        for column in ("#", "source", "reference", "translation", "log P(ref | src)"):
            table.add_column(column, justify="right" if column in ("#", "log P(ref | src)") else "left")
        for i, (s, r, h, lp) in enumerate(
            zip(sources, references, result.translations, result.reference_logprobs, strict=True), 1
        ):
            table.add_row(str(i), s, r, h, f"{lp:.3f}")
        console.print(table)
    console.print(
        summary_table(
            [
                ("run", str(run_dir)),
                ("pairs", f"{result.pairs:,}"),
                ("BLEU", f"{result.bleu:.2f}"),
                ("exact match", f"{100 * result.exact_match:.1f}%"),
                ("mean log P(ref | src)", f"{result.mean_logprob:.3f} per sentence"),
                ("log P per token", f"{result.logprob_per_token:.4f}"),
                ("search", "greedy" if beam == 1 else f"beam {beam}, length penalty {length_penalty:g}"),
            ],
            title="seq2seq evaluation",
        )
    )
    console.print(f"sacrebleu signature: {result.bleu_signature}", highlight=False)
