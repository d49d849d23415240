"""Word-level language models on WikiText-2 at an equal time budget: LSTM and GRU, tied, adaptive softmax.

    python bench/word_lm.py             # 2 minutes per model
    python bench/word_lm.py --quick     # 15 seconds per model, a smoke run

Trains on ../shared/corpora/wikitext-2/valid.txt and reports perplexity on all of test.txt
(the train split is not on these machines; see its SOURCE.md). Every model gets the same
`--minutes` of training wall time, one after the other in this run, and the hand-written
reference loop (LSTM, full softmax) trains under the same budget in the same run.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import reference  # noqa: E402
from bench.common import WIKITEXT2, console, print_table, write_json  # noqa: E402
from charrnn.core.config import TokenizerConfig  # noqa: E402
from charrnn.core.runtime import set_threads  # noqa: E402
from charrnn.core.state import SilentReporter  # noqa: E402
from charrnn.core.text import read_corpus  # noqa: E402
from charrnn.core.tokenizers import build_tokenizer  # noqa: E402
from charrnn.lm.config import LMTrainConfig, ModelConfig, RunConfig  # noqa: E402
from charrnn.lm.run import LanguageModelRun  # noqa: E402
from charrnn.lm.training import train_language_model  # noqa: E402
from charrnn.lm.truncated_bptt import StreamBatches, encode_ids, evaluate_stream  # noqa: E402

SIZE = {"embed": 256, "hidden": 256, "layers": 2, "dropout": 0.3, "batch": 32, "bptt": 35}
VARIANTS = [
    ("lstm", "full", False),
    ("lstm", "full", True),
    ("lstm", "adaptive", False),
    ("gru", "full", False),
    ("gru", "full", True),
    ("gru", "adaptive", False),
]


def train_charrnn(
    cell: str, softmax: str, tie: bool, minutes: float, tmp: Path, threads: int | None
) -> tuple[Path, Any]:
    config = RunConfig(
        tokenizer=TokenizerConfig(level="word"),
        model=ModelConfig(
            cell=cell,
            embed=SIZE["embed"],
            hidden=SIZE["hidden"],
            layers=SIZE["layers"],
            dropout=SIZE["dropout"],
            tie_weights=tie,
            softmax=softmax,
        ),
        training=LMTrainConfig(
            batch_size=SIZE["batch"],
            bptt=SIZE["bptt"],
            epochs=50,  # pinned: the old default (now no epoch limit with max_time); never binds in the budget
            max_time=minutes,
            eval_every=10**9,
            save_every=10**9,
            eval_tokens=20_000,
            threads=threads,
        ),
        corpus=str(WIKITEXT2 / "valid.txt"),
        val_corpus=str(WIKITEXT2 / "test.txt"),
    )
    run_dir = tmp / f"{cell}-{softmax}-{'tied' if tie else 'untied'}"
    result = train_language_model(config, run_dir, reporter=SilentReporter())
    return run_dir, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=None, help="training budget per model (default 2; quick 0.25)"
    )
    parser.add_argument("--quick", action="store_true", help="15 s per model: a smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores, at most 8)")
    args = parser.parse_args()
    minutes = args.minutes or (0.25 if args.quick else 2.0)
    if not (WIKITEXT2 / "valid.txt").is_file():
        console.print(f"[red]{WIKITEXT2} is missing: this benchmark needs ../shared/corpora/wikitext-2[/]")
        raise SystemExit(2)
    set_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="charrnn-wordlm-"))
    train_text = read_corpus(WIKITEXT2 / "valid.txt")
    test_text = read_corpus(WIKITEXT2 / "test.txt")
    tokenizer = build_tokenizer(train_text, TokenizerConfig(level="word"))
    train_ids, test_ids = encode_ids(tokenizer, train_text), encode_ids(tokenizer, test_text)
    eval_batch = min(SIZE["batch"], len(test_ids) // (SIZE["bptt"] + 1))
    results: list[dict[str, Any]] = []

    # the reference: the PyTorch example's loop, LSTM, full softmax, untied
    torch.manual_seed(1234)
    model = reference.RNNModel(
        "lstm", tokenizer.vocab_size, SIZE["embed"], SIZE["hidden"], SIZE["layers"], SIZE["dropout"]
    )
    trainer = reference.ReferenceTrainer(model, train_ids, SIZE["batch"], SIZE["bptt"])
    start = time.perf_counter()
    trainer.run_for(minutes * 60)
    seconds = time.perf_counter() - start
    loss = reference.evaluate(model, test_ids, eval_batch, SIZE["bptt"])
    ref_params = sum(p.numel() for p in model.parameters())
    results.append(
        _row("reference loop", "lstm", "full", False, loss, seconds, trainer.tokens, ref_params, trainer.steps)
    )
    console.print(results[-1])
    del model, trainer

    test_batches = StreamBatches.from_ids(test_ids, eval_batch, SIZE["bptt"], full_chunk=False)
    for cell, softmax, tie in VARIANTS:
        run_dir, result = train_charrnn(cell, softmax, tie, minutes, tmp, args.threads)
        run = LanguageModelRun.load(run_dir)
        if run.note:  # the old loader required the best checkpoint; so does this benchmark
            raise SystemExit(run.note)
        model = run.model
        loss = evaluate_stream(model, test_batches, torch.device("cpu"))
        params = sum(p.numel() for p in model.parameters())
        tokens = result.steps * SIZE["batch"] * SIZE["bptt"]
        results.append(_row("charrnn", cell, softmax, tie, loss, result.seconds, tokens, params, result.steps))
        console.print(results[-1])
    shutil.rmtree(tmp, ignore_errors=True)

    ref_ppl = results[0]["test_perplexity"]
    print_table(
        f"WikiText-2 word level (train valid.txt, test test.txt, vocab {tokenizer.vocab_size:,}), "
        f"{minutes:g} min each, {torch.get_num_threads()} threads",
        ["model", "cell", "softmax", "tied", "params", "tokens/s", "epochs", "test ppl", "vs reference ppl"],
        [
            (
                r["implementation"],
                r["cell"],
                r["softmax"],
                "yes" if r["tied"] else "no",
                f"{r['parameters']:,}",
                r["tokens_per_second"],
                r["tokens"] / len(train_ids),
                r["test_perplexity"],
                f"{r['test_perplexity'] / ref_ppl:.2f}x",
            )
            for r in results
        ],
    )
    write_json(
        "word_lm_quick" if args.quick else "word_lm",
        {
            "minutes": minutes,
            "size": SIZE,
            "vocab": tokenizer.vocab_size,
            "train_tokens": len(train_ids),
            "test_tokens": len(test_ids),
            "results": results,
        },
    )


def _row(
    impl: str,
    cell: str,
    softmax: str,
    tie: bool,
    loss: float,
    seconds: float,
    tokens: int,
    params: int,
    steps: int,
) -> dict[str, Any]:
    return {
        "implementation": impl,
        "cell": cell,
        "softmax": softmax,
        "tied": tie,
        "test_loss": loss,
        "test_perplexity": math.exp(min(loss, 50.0)),
        "seconds": seconds,
        "steps": steps,
        "tokens": tokens,
        "tokens_per_second": tokens / max(seconds, 1e-9),
        "parameters": params,
    }


if __name__ == "__main__":
    main()
