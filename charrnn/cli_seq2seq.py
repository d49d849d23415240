"""`charrnn seq2seq ...`: train an encoder–decoder on sentence pairs, translate, evaluate (thin typer commands)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from charrnn.cli_support import bundled, err_console, report_training, training_session
from charrnn.config import TokenizerConfig
from charrnn.errors import CharRNNError
from charrnn.progress import summary_table
from charrnn.seq2seq import Seq2SeqConfig, Seq2SeqRunConfig, Seq2SeqTrainConfig

seq2seq_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Encoder–decoder with attention: train on sentence pairs, translate, evaluate (BLEU).",
)

BUNDLED_PAIRS = Path("corpora") / "multi30k-de-en-small.tsv"
BUNDLED_VAL = Path("corpora") / "multi30k-de-en-small-val.tsv"


def _bundled(path: Path) -> Path:
    """A bundled pairs file, or a one-line error when it is not here."""
    found = bundled(path)
    if found is None:
        raise CharRNNError(f"No PAIRS given and the bundled {path} is not here; pass a PAIRS file or --src/--tgt.")
    return found


def _read_lines_arg(texts: list[str] | None, file: Path | None) -> list[str]:
    """Sentences from arguments, --file, or stdin (blank lines skipped)."""
    from charrnn.data import read_stdin_text, read_text

    lines = list(texts or [])
    if file is not None:
        lines += read_text(file).split("\n")
    elif not lines and not sys.stdin.isatty():
        lines = read_stdin_text().split("\n")
    lines = [line.strip() for line in lines if line.strip()]
    if not lines:
        raise CharRNNError("Nothing to translate: give TEXT arguments, --file FILE, or lines on stdin.")
    return lines


@seq2seq_app.command("train")
def train(
    pairs: Path | None = typer.Argument(
        None, help="TSV of source<TAB>target lines (default: the bundled Multi30k de-en slice)."
    ),
    src: Path | None = typer.Option(None, "--src", help="Source-side file of parallel files (with --tgt)."),
    tgt: Path | None = typer.Option(None, "--tgt", help="Target-side file, line-aligned with --src."),
    val: Path | None = typer.Option(None, "--val", help="Validation TSV (default: hold out --val-fraction)."),
    val_src: Path | None = typer.Option(None, "--val-src", help="Validation source file (with --val-tgt)."),
    val_tgt: Path | None = typer.Option(None, "--val-tgt", help="Validation target file."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run directory (default checkpoints/<pairs>-<attention>)."
    ),
    resume: Path | None = typer.Option(None, "--resume", help="Continue the run in this directory."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in --out."),
    skip_malformed: bool = typer.Option(
        False, "--skip-malformed", help="Skip malformed TSV lines instead of failing."
    ),
    level: str = typer.Option("word", help="Token unit for both sides: char, word or subword."),
    source_level: str | None = typer.Option(None, help="Token unit of the source side (overrides --level)."),
    target_level: str | None = typer.Option(None, help="Token unit of the target side (overrides --level)."),
    lowercase: bool = typer.Option(False, "--lowercase", help="Lowercase both sides before tokenizing."),
    vocab_size: int | None = typer.Option(None, help="Units kept per side (subword: the model size)."),
    source_vocab_size: int | None = typer.Option(None, help="Source vocabulary size (overrides --vocab-size)."),
    target_vocab_size: int | None = typer.Option(None, help="Target vocabulary size (overrides --vocab-size)."),
    min_count: int = typer.Option(1, help="Drop units seen fewer times (they become <unk>)."),
    subword_model: str = typer.Option("unigram", help="sentencepiece model: unigram or bpe."),
    cell: str = typer.Option(Seq2SeqConfig.cell, help="Recurrent cell: gru, lstm or rnn."),
    layers: int = typer.Option(Seq2SeqConfig.layers, help="Stacked layers in the encoder and the decoder."),
    hidden: int = typer.Option(Seq2SeqConfig.hidden, help="Decoder units (a bidirectional encoder splits them)."),
    embed: int = typer.Option(Seq2SeqConfig.embed, help="Embedding size (both sides)."),
    dropout: float = typer.Option(
        Seq2SeqConfig.dropout, help="Dropout on embeddings, between layers, before the softmax."
    ),
    bidirectional: bool = typer.Option(
        Seq2SeqConfig.bidirectional, "--bidirectional/--unidirectional", help="Read the source both ways."
    ),
    attention: str = typer.Option(
        Seq2SeqConfig.attention, help="none, bahdanau (additive, step loop) or luong-dot/luong-general (fused)."
    ),
    context: str = typer.Option(
        Seq2SeqConfig.context,
        help="With --attention none: init (c starts the decoder) or input (also fed every step).",
    ),
    attention_size: int = typer.Option(0, help="Bahdanau's inner size (0: --hidden)."),
    teacher_forcing: float = typer.Option(1.0, help="Probability of feeding the gold previous token in training."),
    label_smoothing: float = typer.Option(0.0, help="Label smoothing of the training loss (validation: none)."),
    max_length: int | None = typer.Option(None, help="Skip training pairs longer than this many tokens."),
    batch_size: int = typer.Option(Seq2SeqTrainConfig.batch_size, help="Sentence pairs per step."),
    optimizer: str = typer.Option("adamw", help="adamw, adam or sgd."),
    lr: float = typer.Option(Seq2SeqTrainConfig.lr, help="Learning rate."),
    weight_decay: float = typer.Option(0.01, help="AdamW weight decay."),
    schedule: str = typer.Option("plateau", help="plateau, cosine or constant."),
    warmup_steps: int = typer.Option(0, help="Linear learning-rate warmup steps."),
    clip: float = typer.Option(1.0, help="Clip the gradient norm to this value."),
    epochs: int = typer.Option(Seq2SeqTrainConfig.epochs, help="Passes over the training pairs."),
    max_steps: int | None = typer.Option(None, help="Stop after this many steps in total."),
    max_time: float | None = typer.Option(None, help="Stop after this many minutes (this session)."),
    val_fraction: float = typer.Option(
        Seq2SeqTrainConfig.val_fraction, help="Pairs held out when no --val is given."
    ),
    eval_every: int = typer.Option(Seq2SeqTrainConfig.eval_every, help="Evaluate every N steps."),
    save_every: int = typer.Option(
        Seq2SeqTrainConfig.save_every, help="Save a resumable checkpoint every N steps."
    ),
    save_every_minutes: float | None = typer.Option(
        None, help="Also save a resumable checkpoint every this many minutes."
    ),
    log_every: int = typer.Option(Seq2SeqTrainConfig.log_every, help="Log the mean train loss every N steps."),
    seed: int = typer.Option(1234, help="Random seed (CPU runs repeat exactly)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
    threads: int | None = typer.Option(None, help="CPU threads (default: all cores, at most 8)."),
    precision: str = typer.Option("fp32", help="fp32, or bf16/fp16 autocast (for CUDA GPUs)."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (for CUDA GPUs)."),
    encoding: str = typer.Option("utf-8", help="Text encoding of the pair files."),
    errors: str = typer.Option("strict", help="Undecodable bytes: strict, replace or ignore."),
) -> None:
    """Train an encoder–decoder on sentence pairs (teacher forcing) and save it to a run directory."""
    from charrnn.seq2seq_training import train_seq2seq

    def side(side_level: str | None, side_vocab: int | None) -> TokenizerConfig:
        return TokenizerConfig(side_level or level, lowercase, side_vocab or vocab_size, min_count, subword_model)

    config = Seq2SeqRunConfig(
        source_tokenizer=side(source_level, source_vocab_size),
        target_tokenizer=side(target_level, target_vocab_size),
        model=Seq2SeqConfig(
            0, 0, cell, embed, hidden, layers, dropout, bidirectional, attention, context, attention_size
        ),
        training=Seq2SeqTrainConfig(
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            schedule=schedule,
            warmup_steps=warmup_steps,
            clip=clip,
            epochs=epochs,
            max_steps=max_steps,
            max_time=max_time,
            val_fraction=val_fraction,
            eval_every=eval_every,
            save_every=save_every,
            save_every_minutes=save_every_minutes,
            log_every=log_every,
            seed=seed,
            device=device,
            threads=threads,
            precision=precision,
            compile=compile_model,
            teacher_forcing=teacher_forcing,
            label_smoothing=label_smoothing,
            max_length=max_length,
        ),
    )
    if resume is not None:
        run_dir = resume
    else:
        if pairs is None and src is None and tgt is None:
            pairs = _bundled(BUNDLED_PAIRS)
            if val is None and val_src is None and val_tgt is None:
                val = _bundled(BUNDLED_VAL)

        def absolute(path: Path | None) -> str | None:  # so --resume works from any directory
            return str(path.resolve()) if path is not None else None

        config.pairs, config.source_file, config.target_file = absolute(pairs), absolute(src), absolute(tgt)
        config.val_pairs, config.val_source_file = absolute(val), absolute(val_src)
        config.val_target_file = absolute(val_tgt)
        stem = (pairs or src or Path("pairs")).stem
        run_dir = out or Path("checkpoints") / f"{stem}-{attention}"
    config.validate()

    with training_session() as (stop, reporter):
        result = train_seq2seq(
            config,
            run_dir,
            resume=resume is not None,
            overwrite=overwrite,
            reporter=reporter,
            should_stop=stop,
            encoding=encoding,
            errors=errors,
            skip_malformed=skip_malformed,
        )
    from charrnn.seq2seq import read_seq2seq_config

    report_training(
        result,
        read_seq2seq_config(run_dir).target_tokenizer.level,
        stop,
        title="seq2seq training summary",
        speed_unit="target tokens/s",
        resume_command=f"charrnn seq2seq train --resume {result.run_dir}",
        next_step=f"Translate with: charrnn seq2seq translate {result.run_dir} 'a sentence'",
    )


def attention_table(source_tokens: list[str], target_tokens: list[str], weights: list[list[float]]) -> Table:
    """The attention matrix as a heatmap table: one row per generated token, one column per source token."""
    table = Table(
        title="attention (% of each output token's weight on each source token)",
        title_justify="left",
        show_lines=False,
        padding=(0, 1),
    )
    table.add_column("output \\ source", style="bold", no_wrap=True)
    for token in source_tokens:
        table.add_column(repr(token)[1:-1], justify="right", no_wrap=True)
    for token, row in zip(target_tokens, weights, strict=False):
        cells = []
        for w in row:
            level = int(round(255 - 200 * w))
            colour = "white" if w >= 0.5 else "black"
            cells.append(Text(f"{round(w * 100):d}", style=f"{colour} on rgb({level},{level},255)"))
        table.add_row(repr(token)[1:-1], *cells)
    return table


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
) -> None:
    """Translate sentences with a trained model: one output line per input line."""
    from charrnn.runtime import resolve_device
    from charrnn.seq2seq import load_seq2seq
    from charrnn.translate import TranslateSettings, translate

    settings = TranslateSettings(beam=beam, max_length=max_length, length_penalty=length_penalty)
    settings.validate()
    lines = _read_lines_arg(texts, file)
    config, source_tokenizer, target_tokenizer, model = load_seq2seq(run_dir, resolve_device(device))
    if show_attention and config.model.attention == "none":
        raise CharRNNError(f"{run_dir} was trained with --attention none; it has no attention to show.")
    results = translate(model, source_tokenizer, target_tokenizer, lines, settings, with_attention=show_attention)
    if as_json:
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=1))
        return
    console = Console()
    for result in results:
        if show_attention and result.attention is not None:
            console.print(f"[bold]{result.source}[/]", highlight=False)
            console.print(attention_table(result.source_tokens, result.tokens, result.attention))
            console.print(result.text, highlight=False, markup=False)
        else:
            print(result.text, flush=True)
        if not result.finished:
            err_console().print(f"[yellow]stopped at the length limit: {result.source!r}[/]")


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
) -> None:
    """Corpus BLEU (sacrebleu, detokenised, cased), exact match and log P(reference | source) per sentence."""
    from charrnn.checkpoint import atomic_write
    from charrnn.pairs import read_pairs
    from charrnn.runtime import resolve_device
    from charrnn.seq2seq import load_seq2seq
    from charrnn.translate import TranslateSettings, evaluate_pairs

    settings = TranslateSettings(beam=beam, max_length=max_length, length_penalty=length_penalty)
    settings.validate()
    if limit is not None and limit < 1:
        raise CharRNNError(f"--limit must be at least 1, got {limit}.")
    _, source_tokenizer, target_tokenizer, model = load_seq2seq(run_dir, resolve_device(device))
    corpus = read_pairs(pairs, src, tgt, skip_malformed=skip_malformed)
    if corpus.skipped_empty:
        err_console().print(f"[yellow]skipped {corpus.skipped_empty} pair(s) with an empty source or target[/]")
    if corpus.malformed_lines:
        err_console().print(f"[yellow]skipped {len(corpus.malformed_lines)} malformed line(s)[/]")
    sources, references = corpus.sources[:limit], corpus.targets[:limit]
    result = evaluate_pairs(model, source_tokenizer, target_tokenizer, sources, references, settings)
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
    console = Console()
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
                ("pairs", f"{result.pairs:,}"),
                ("BLEU", f"{result.bleu:.2f}"),
                ("exact match", f"{100 * result.exact_match:.1f}%"),
                ("mean log P(ref | src)", f"{result.mean_logprob:.3f} per sentence"),
                ("log P per token", f"{result.logprob_per_token:.4f}"),
                ("search", "greedy" if beam == 1 else f"beam {beam}, length penalty {length_penalty:g}"),
            ],
            title=f"evaluation of {run_dir}",
        )
    )
    console.print(f"sacrebleu signature: {result.bleu_signature}", highlight=False)
