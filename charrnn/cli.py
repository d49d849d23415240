"""The `charrnn` command line: thin typer commands over the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from charrnn import __version__
from charrnn.checkpoint import read_config
from charrnn.cli_seq2seq import seq2seq_app
from charrnn.cli_support import bundled, err_console, report_training, training_session
from charrnn.config import ModelConfig, RunConfig, TokenizerConfig, TrainConfig
from charrnn.errors import CharRNNError
from charrnn.tokenizers import EOS_ID

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train recurrent language models on your text, sample from them, and score sentences.",
)

app.add_typer(seq2seq_app, name="seq2seq")

DEFAULT_CORPUS = Path("corpora") / "tinyshakespeare.txt"


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
) -> None:
    """charrnn: char-, word- and subword-level RNN language models."""


def _default_corpus() -> Path:
    """The bundled Tiny Shakespeare, from the working directory or the source checkout."""
    corpus = bundled(DEFAULT_CORPUS)
    if corpus is None:
        raise CharRNNError(
            "No corpus given and the bundled corpora/tinyshakespeare.txt is not here; pass a CORPUS file."
        )
    return corpus


@app.command()
def train(
    corpus: Path | None = typer.Argument(
        None, help="UTF-8 text file to train on (default: bundled Tiny Shakespeare)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run directory (default checkpoints/<corpus>-<level>)."
    ),
    resume: Path | None = typer.Option(None, "--resume", help="Continue the run in this directory."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in --out."),
    level: str = typer.Option(TokenizerConfig.level, help="Token unit: char, word or subword."),
    lowercase: bool = typer.Option(False, "--lowercase", help="Lowercase text before tokenizing."),
    vocab_size: int | None = typer.Option(None, help="Keep at most this many units (subword: required size)."),
    min_count: int = typer.Option(TokenizerConfig.min_count, help="Drop units seen fewer times (become <unk>)."),
    subword_model: str = typer.Option(TokenizerConfig.subword_model, help="sentencepiece model: unigram or bpe."),
    cell: str = typer.Option(ModelConfig.cell, help="Recurrent cell: lstm, gru or rnn (tanh)."),
    layers: int = typer.Option(ModelConfig.layers, help="Stacked recurrent layers."),
    hidden: int = typer.Option(ModelConfig.hidden, help="Hidden units per layer."),
    embed: int = typer.Option(ModelConfig.embed, help="Embedding size."),
    dropout: float = typer.Option(ModelConfig.dropout, help="Dropout between layers and before the softmax."),
    tie_weights: bool = typer.Option(False, "--tie-weights", help="Share embedding and output weights."),
    softmax: str = typer.Option(ModelConfig.softmax, help="full, or adaptive (fast for large vocabularies)."),
    batch_size: int = typer.Option(TrainConfig.batch_size, help="Parallel streams per step."),
    bptt: int = typer.Option(TrainConfig.bptt, help="Tokens per truncated-BPTT chunk."),
    optimizer: str = typer.Option(TrainConfig.optimizer, help="adamw, adam or sgd."),
    lr: float = typer.Option(TrainConfig.lr, help="Learning rate."),
    weight_decay: float = typer.Option(TrainConfig.weight_decay, help="AdamW weight decay."),
    schedule: str = typer.Option(
        TrainConfig.schedule,
        help="cosine (decays to the end of --max-time when given, else of the steps), plateau or constant.",
    ),
    warmup_steps: int = typer.Option(TrainConfig.warmup_steps, help="Linear learning-rate warmup steps."),
    clip: float = typer.Option(TrainConfig.clip, help="Clip the gradient norm to this value."),
    epochs: int = typer.Option(TrainConfig.epochs, help="Passes over the training text."),
    max_steps: int | None = typer.Option(None, help="Stop after this many steps in total."),
    max_time: float | None = typer.Option(None, help="Stop after this many minutes (this session)."),
    val_fraction: float = typer.Option(TrainConfig.val_fraction, help="Hold out the end of the corpus."),
    val: Path | None = typer.Option(None, "--val", help="Separate validation file instead of --val-fraction."),
    eval_every: int = typer.Option(TrainConfig.eval_every, help="Evaluate every N steps."),
    save_every: int = typer.Option(TrainConfig.save_every, help="Save a resumable checkpoint every N steps."),
    save_every_minutes: float | None = typer.Option(
        None, help="Also save a resumable checkpoint every M minutes."
    ),
    log_every: int = typer.Option(TrainConfig.log_every, help="Log the mean train loss every N steps."),
    seed: int = typer.Option(TrainConfig.seed, help="Random seed (CPU runs repeat exactly)."),
    device: str = typer.Option(TrainConfig.device, help="auto, cpu, cuda or mps."),
    threads: int | None = typer.Option(None, help="CPU threads (default: all cores, at most 8)."),
    precision: str = typer.Option(TrainConfig.precision, help="fp32, or bf16/fp16 autocast (for CUDA GPUs)."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (for CUDA GPUs)."),
    encoding: str = typer.Option("utf-8", help="Text encoding of the corpus."),
    errors: str = typer.Option("strict", help="Undecodable bytes: strict, replace or ignore."),
) -> None:
    """Train a language model on CORPUS (truncated BPTT) and save it to a run directory."""
    from charrnn.training import train_language_model

    run_config = RunConfig(
        tokenizer=TokenizerConfig(level, lowercase, vocab_size, min_count, subword_model),
        model=ModelConfig(0, cell, embed, hidden, layers, dropout, tie_weights, softmax),
        training=TrainConfig(
            batch_size=batch_size,
            bptt=bptt,
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
        ),
    )
    if resume is not None:
        run_dir = resume
    else:
        corpus = corpus or _default_corpus()
        run_config.corpus = str(corpus.resolve())  # absolute, so --resume works from any directory
        run_config.val_corpus = str(val.resolve()) if val else None
        run_dir = out or Path("checkpoints") / f"{corpus.stem}-{level}"
    run_config.validate()

    with training_session() as (stop, reporter):
        result = train_language_model(
            run_config,
            run_dir,
            resume=resume is not None,
            overwrite=overwrite,
            reporter=reporter,
            should_stop=stop,
            encoding=encoding,
            errors=errors,
        )
    level_name = run_config.tokenizer.level if resume is None else read_config(run_dir).tokenizer.level
    report_training(
        result,
        level_name,
        stop,
        title="training summary",
        speed_unit="tokens/s",
        resume_command=f"charrnn train --resume {result.run_dir}",
        next_step=f"Sample with: charrnn sample {result.run_dir}",
    )


@app.command()
def sample(
    run_dir: Path = typer.Argument(..., help="Run directory written by `charrnn train`."),
    temperature: float = typer.Option(1.0, "--temperature", "-t", help="Softmax temperature (> 0)."),
    greedy: bool = typer.Option(False, "--greedy", help="Always take the most probable token."),
    top_k: int | None = typer.Option(None, help="Draw only from the K most probable tokens."),
    top_p: float | None = typer.Option(None, help="Draw from the smallest set with total probability >= P."),
    prime: str = typer.Option("", "--prime", "-p", help="Text the model reads first; the sample continues it."),
    length: int = typer.Option(500, "--length", "-n", help="Tokens to generate (at most)."),
    until_eos: bool = typer.Option(False, "--until-eos", help="Stop each sample at the end of its line."),
    num: int = typer.Option(1, "--num", help="Independent samples, generated together in one batch."),
    seed: int | None = typer.Option(None, help="Random seed for repeatable samples."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
) -> None:
    """Generate text from a trained model (streamed to stdout)."""
    from charrnn.checkpoint import load_language_model
    from charrnn.runtime import resolve_device
    from charrnn.sampling import SampleSettings, encode_prime, generate

    settings = SampleSettings(length, temperature, greedy, top_k, top_p, until_eos, num, seed)
    settings.validate()
    _, tokenizer, model = load_language_model(run_dir, resolve_device(device))
    encode_prime(tokenizer, prime)  # refuse a bad prime before anything is printed
    out = sys.stdout
    if num == 1:
        decode = tokenizer.stream_decoder()
        for token in tokenizer.encode(prime):  # so spacing continues the prime correctly
            decode(token)
        out.write(prime)

        def stream(tokens, active) -> None:
            if bool(active[0]):
                token = int(tokens[0])
                if not (until_eos and token == EOS_ID):
                    out.write(decode(token))
                    out.flush()

        generate(model, tokenizer, prime, settings, on_step=stream)
        out.write("\n")
        return
    samples = generate(model, tokenizer, prime, settings)
    for index, ids in enumerate(samples, 1):
        if until_eos and ids and ids[-1] == EOS_ID:
            ids = ids[:-1]
        decode = tokenizer.stream_decoder()
        for token in tokenizer.encode(prime):
            decode(token)
        out.write(f"--- sample {index}/{num} ---\n{prime}{''.join(decode(t) for t in ids)}\n")


@app.command("score-sentence")
def score_sentence(
    run_dir: Path = typer.Argument(..., help="Run directory written by `charrnn train`."),
    sentences: list[str] | None = typer.Argument(None, help="Sentences to score (or --file, or stdin)."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Score each line of this file."),
    per_token: bool = typer.Option(False, "--per-token", help="Show each token's conditional probability."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array for scripts."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
) -> None:
    """Score how probable sentences are: log-probability, perplexity and per-token detail."""
    from charrnn.checkpoint import load_language_model
    from charrnn.data import read_stdin_text, read_text
    from charrnn.runtime import resolve_device
    from charrnn.scoring import score_sentences

    texts = list(sentences or [])
    skipped = 0
    if file is not None:
        lines = read_text(file).split("\n")
        texts += [line for line in lines if line.strip()]
        skipped = sum(1 for line in lines[:-1] if not line.strip()) if lines else 0
    elif not texts and not sys.stdin.isatty():
        lines = read_stdin_text().split("\n")
        texts = [line for line in lines if line.strip()]
    if not texts:
        raise CharRNNError("No sentence to score: give SENTENCE arguments, --file FILE, or lines on stdin.")
    if skipped:
        err_console().print(f"[yellow]skipped {skipped} blank line(s)[/]")
    _, tokenizer, model = load_language_model(run_dir, resolve_device(device))
    scores = score_sentences(model, tokenizer, texts)
    if as_json:
        print(json.dumps([s.to_dict() for s in scores], ensure_ascii=False, indent=1))
        return
    console = Console()
    table = Table(title="sentence scores (natural log unless noted)")
    for column in ("sentence", "log P", "log10 P", "tokens", "<unk>", "perplexity"):
        table.add_column(column, justify="left" if column == "sentence" else "right")
    for s in scores:
        table.add_row(
            s.sentence,
            f"{s.logprob:.4f}",
            f"{s.log10prob:.4f}",
            str(s.n_tokens),
            str(s.n_unk),
            f"{s.perplexity:.3f}",
        )
    console.print(table)
    if per_token:
        for s in scores:
            detail = Table(title=f"per token: {s.sentence}", title_justify="left")
            for column in ("#", "token", "P(token | before)", "log P"):
                detail.add_column(column, justify="left" if column == "token" else "right")
            for i, (token, logp) in enumerate(zip(s.tokens, s.token_logprobs, strict=True), 1):
                detail.add_row(str(i), repr(token)[1:-1], f"{_exp(logp):.6f}", f"{logp:.4f}")
            console.print(detail)


def _exp(x: float) -> float:
    import math

    return math.exp(x)


@app.command()
def version() -> None:
    """Print the charrnn version."""
    print(__version__)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="charrnn", standalone_mode=False)
    except CharRNNError as exc:
        if debug:
            raise
        print(f"charrnn: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("charrnn: aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("charrnn: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        if debug:
            raise
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # a usage error from typer/click
            message = " ".join(exc.format_message().split())
            print(f"charrnn: error: {message} (see --help)", file=sys.stderr)
            sys.exit(exc.exit_code)
        # anything else is a bug in charrnn: still one line unless --debug
        print(
            f"charrnn: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
