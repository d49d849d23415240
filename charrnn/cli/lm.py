"""`charrnn train`, `charrnn sample`, `charrnn score-sentence`: thin typer commands over `charrnn.api`."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from charrnn.cli.common import OOV_HELP, OOV_LOGPROB_HELP, SCORING_PRECISION_HELP, read_sentences
from charrnn.cli.display import err_console, load_run, out_console
from charrnn.cli.options import add_train_command, corpus_argument, parameter


def register(app: typer.Typer) -> None:
    """Add the language-model commands to `app`."""
    corpus = typer.Argument(
        None,
        help="UTF-8 text file(s) or folder(s) (their *.txt files; see --glob), or - for stdin "
        "(default: bundled Tiny Shakespeare); with --task classify or --condition label, labelled data "
        "(default: the bundled surnames by language, corpora/names.tsv).",
        parser=corpus_argument,
    )
    add_train_command(
        app,
        "lm",
        parameter("corpus", list[Path] | None, corpus),
        summary="Train a language model on CORPUS by truncated BPTT and save it to a run directory; with --task "
        "classify a classifier, with --condition label a language model conditioned on the label, of labelled data "
        "(a folder of label files or folders, or a TSV/JSONL file).",
        default_out="checkpoints/<corpus>-<level>",
        tables="tokenizer, model, training",
    )
    app.command()(sample)
    app.command("score-sentence")(score_sentence)


THREADS_HELP = "CPU threads (default 1: fastest for generation and scoring, and safe on a busy machine)."


def _load_lm(run_dir: Path, device: str, threads: int | None):
    """The language model in RUN_DIR (see `charrnn.cli.display.load_run`)."""
    return load_run(run_dir, device, threads, "lm")


LABEL_HELP = (
    "The label to generate in (a run trained with --condition label; default: drawn from the training prior)."
)


def sample(
    run_dir: Path = typer.Argument(..., help="Run directory written by `charrnn train`."),
    temperature: float = typer.Option(1.0, "--temperature", "-t", help="Softmax temperature (> 0)."),
    greedy: bool = typer.Option(False, "--greedy", help="Always take the most probable token."),
    top_k: int | None = typer.Option(None, help="Draw only from the K most probable tokens."),
    top_p: float | None = typer.Option(None, help="Draw from the smallest set with total probability >= P."),
    prime: str = typer.Option("", "--prime", "-p", help="Text the model reads first; the sample continues it."),
    length: int = typer.Option(500, "--length", "-n", help="Tokens to generate (at most)."),
    until_eos: bool = typer.Option(
        False, "--until-eos", help="Stop each sample at the end of its line (always, for a conditional model)."
    ),
    num: int = typer.Option(1, "--num", help="Independent samples, generated together in one batch."),
    seed: int | None = typer.Option(None, help="Random seed for repeatable samples."),
    label: str | None = typer.Option(None, "--label", "-l", help=LABEL_HELP),
    interactive: bool = typer.Option(
        False, "--interactive", "-i", help="A prompt loop: each line typed primes a sample; :help for commands."
    ),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
    threads: int | None = typer.Option(None, help=THREADS_HELP),
) -> None:
    """Generate text from a trained model (streamed to stdout); with --label, texts of that label."""
    options = {name: value for name, value in locals().items() if name != "run_dir"}  # for the run's kind
    from charrnn import kinds
    from charrnn.core.sampling import SampleSettings

    settings = {"greedy": greedy, "top_k": top_k, "top_p": top_p, "until_eos": until_eos, "seed": seed}
    SampleSettings(length=length, temperature=temperature, num=num, **settings).validate()
    kinds.handler(run_dir, "sample")(run_dir, options)


def sample_language_model(run_dir: Path, options: dict[str, Any]) -> None:
    """`charrnn sample` on a language model: stream one sample, or print --num of them, or the prompt loop."""
    from charrnn.core.errors import CharRNNError

    if options["label"] is not None:
        raise CharRNNError(
            f"{run_dir} is a language model without labels; --label needs a run trained with --condition label."
        )
    prime, temperature, length, num = options["prime"], options["temperature"], options["length"], options["num"]
    settings = {name: options[name] for name in ("greedy", "top_k", "top_p", "until_eos", "seed")}
    run = _load_lm(run_dir, options["device"], options["threads"])
    for note in sample_notes(run, prime, settings["greedy"], temperature):
        err_console().print(f"note: {note}", style="yellow")
    if options["interactive"]:
        from charrnn.cli.interactive import Settings, interactive_loop

        interactive_loop(
            run, Settings(temperature, length, settings["top_p"], settings["greedy"], settings["seed"])
        )
        return
    out = sys.stdout
    if num == 1:
        for piece in run.stream(prime, length, temperature, **settings):
            out.write(piece)
            out.flush()
        out.write("\n")
        return
    for index, text in enumerate(run.sample(prime, length, temperature, num=num, **settings), 1):
        out.write(f"--- sample {index}/{num} ---\n{text}\n")


def sample_notes(run: Any, prime: str, greedy: bool, temperature: float) -> list[str]:
    """What `sample` silently changes or ignores: unknown units in the prime, --temperature with --greedy."""
    from charrnn.core.special_tokens import UNK_ID

    notes = []
    ids = run.tokenizer.encode(prime) if prime else []
    unknown = sum(1 for i in ids if i == UNK_ID)
    if 0 < unknown < len(ids):  # a prime of unknown units only is refused with its own error
        notes.append(
            f"{unknown} unit(s) of --prime are not in the model's vocabulary; the model reads them as <unk>"
        )
    if greedy and temperature != 1.0:
        notes.append("--temperature is ignored with --greedy (greedy always takes the most probable token)")
    return notes


def show_token(token: str) -> str:
    """A token as the --per-token table shows it: ␠ for a space, ⏎ for <eos>, escapes for other control characters."""
    if token == "<eos>":
        return "⏎"
    return repr(token)[1:-1].replace(" ", "␠")


def score_sentence(
    run_dir: Path = typer.Argument(..., help="Run directory written by `charrnn train`."),
    sentences: list[str] | None = typer.Argument(None, help="Sentences to score (or --file, or stdin)."),
    file: Path | None = typer.Option(None, "--file", "-f", help="Score each line of this file."),
    label: str | None = typer.Option(
        None, "--label", "-l", help="Score log P(text | label) (a run trained with --condition label)."
    ),
    per_token: bool = typer.Option(False, "--per-token", help="Show each token's conditional probability."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array for scripts."),
    oov: str = typer.Option("penalty", "--oov", help=OOV_HELP),
    oov_logprob: float | None = typer.Option(None, "--oov-logprob", help=OOV_LOGPROB_HELP),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
    threads: int | None = typer.Option(None, help=THREADS_HELP),
    precision: str = typer.Option("fp32", help=SCORING_PRECISION_HELP),
) -> None:
    """Score how probable sentences are: log-probability, perplexity and per-token detail."""
    from charrnn import kinds
    from charrnn.core.scoring import check_oov

    check_oov(oov, oov_logprob)
    handler = kinds.handler(run_dir, "score-sentence")
    texts = read_sentences(sentences, file, "score")
    options = {"label": label, "oov": oov, "oov_logprob": oov_logprob, "precision": precision}
    scores = handler(run_dir, texts, options, device, threads)
    show_scores(scores, oov, as_json, per_token)


def score_language_model(
    run_dir: Path, texts: list[str], options: dict[str, Any], device: str, threads: int | None
) -> list[Any]:
    """`charrnn score-sentence` on a language model: log P(sentence) of each."""
    from charrnn.core.errors import CharRNNError

    if options.pop("label") is not None:
        raise CharRNNError(
            f"{run_dir} is a language model without labels; --label needs a run trained with --condition label."
        )
    return _load_lm(run_dir, device, threads).score(texts, **options)


def show_scores(scores: list[Any], oov: str, as_json: bool, per_token: bool) -> None:
    """The scores as a table (and per-token tables), or as JSON; a note on stderr about <unk> tokens."""
    with_unk = sum(1 for s in scores if s.n_unk)
    if with_unk:
        err_console().print(
            f"note: {with_unk} sentence(s) contain <unk> (tokens the model never saw), "
            f"counted with --oov {oov}; see --help",
            style="yellow",
        )
    if as_json:
        print(json.dumps([s.to_dict() for s in scores], ensure_ascii=False, indent=1))
        return
    console = out_console()
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
                detail.add_row(str(i), show_token(token), f"{math.exp(logp):.6f}", f"{logp:.4f}")
            console.print(detail)
