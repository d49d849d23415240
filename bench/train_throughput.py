"""Training tokens/s: `charrnn train` against the hand-written PyTorch loop, interleaved in one run.

    python bench/train_throughput.py            # char 2x512 LSTM and word level (33k vocabulary)
    python bench/train_throughput.py --quick    # a smoke run with small models
    python bench/train_throughput.py --precisions fp32    # charrnn in fp32 only

Each charrnn arm runs in fp32 and with `--precision bf16` (bf16 autocast; `--precisions`). On a
CPU whose PyTorch has no bf16 LSTM kernel (no avx512_bf16/AMX) the bf16 arms are skipped with the
reason, in the table and the JSON.

Each round times the reference loop and charrnn's training loop (the library's
`train_language_model`, the code `charrnn train` runs) on the same model, one after the
other, so both see the same machine load; ratios are taken per round and the median reported.
Achieved GFLOP/s is set against the GFLOP/s of a plain `torch.matmul` measured in each round.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import reference  # noqa: E402
from bench.common import (  # noqa: E402
    RESULTS,
    SHARED_CORPORA,
    TINY_SHAKESPEARE,
    WIKITEXT2,
    adaptive_train_flops,
    console,
    gemm_gflops,
    median,
    print_table,
    recurrent_train_flops,
    softmax_train_flops,
    write_json,
)
from charrnn.core.config import TokenizerConfig  # noqa: E402
from charrnn.core.state import SilentReporter  # noqa: E402
from charrnn.core.text import read_corpus  # noqa: E402
from charrnn.core.tokenizers import build_tokenizer  # noqa: E402
from charrnn.lm.config import LMTrainConfig, ModelConfig, RunConfig  # noqa: E402
from charrnn.lm.model import default_adaptive_cutoffs  # noqa: E402
from charrnn.lm.training import train_language_model  # noqa: E402
from charrnn.lm.truncated_bptt import encode_ids  # noqa: E402

WORD_VOCAB = 33_278  # WikiText-2's vocabulary size


@dataclass
class Case:
    """One model/data setting timed on both implementations."""

    name: str
    level: str
    corpus: Path
    embed: int
    hidden: int
    layers: int
    batch: int
    bptt: int
    vocab_cap: int | None
    charrnn_softmaxes: tuple[str, ...]


class StepTimer(SilentReporter):
    """Collects charrnn's per-window tokens/s (a window is 10 steps)."""

    def __init__(self) -> None:
        self.windows: list[float] = []

    def step(self, record: dict[str, Any]) -> None:
        self.windows.append(record["tokens_per_second"])


def word_corpus(tmp: Path) -> Path:
    """Real text with a vocabulary above 33k words: WikiText-2 valid+test, Multi30k en+de, Shakespeare."""
    parts = [
        WIKITEXT2 / "valid.txt",
        WIKITEXT2 / "test.txt",
        SHARED_CORPORA / "multi30k" / "train.en",
        SHARED_CORPORA / "multi30k" / "train.de",
        TINY_SHAKESPEARE,
    ]
    present = [p for p in parts if p.is_file()]
    if len(present) < len(parts):
        console.print(
            "[yellow]../shared/corpora is incomplete: the word-level vocabulary will be smaller than 33k[/]"
        )
    path = tmp / "word-corpus.txt"
    path.write_text("".join(p.read_text(encoding="utf-8") for p in present), encoding="utf-8")
    return path


def run_charrnn(
    case: Case, softmax: str, steps: int, tmp: Path, threads: int | None, precision: str = "fp32"
) -> float:
    """Median tokens/s of charrnn's training loop over the windows after the first."""
    config = RunConfig(
        tokenizer=TokenizerConfig(level=case.level, vocab_size=case.vocab_cap),
        model=ModelConfig(embed=case.embed, hidden=case.hidden, layers=case.layers, dropout=0.2, softmax=softmax),
        training=LMTrainConfig(
            batch_size=case.batch,
            bptt=case.bptt,
            epochs=50,  # pinned: the old default (now None, i.e. no epoch limit with max_steps); never binds here
            max_steps=steps,
            eval_tokens=5_000,
            schedule="constant",
            threads=threads,
            precision=precision,
        ),
        corpus=str(case.corpus),
    )
    timer = StepTimer()
    run_dir = tmp / f"run-{case.name}-{softmax}-{precision}"
    train_language_model(config, run_dir, overwrite=True, reporter=timer)
    shutil.rmtree(run_dir, ignore_errors=True)
    windows = timer.windows[1:] or timer.windows
    return median(windows)


def arm_key(softmax: str, precision: str) -> str:
    """A charrnn arm's name: the softmax, with the precision when it is not fp32."""
    return softmax if precision == "fp32" else f"{softmax}, {precision}"


def run_reference(model: reference.RNNModel, ids: torch.Tensor, case: Case, steps: int) -> float:
    """Tokens/s of the reference loop over `steps` steps after 3 warm-up steps."""
    trainer = reference.ReferenceTrainer(model, ids, case.batch, case.bptt)
    for _ in range(3):
        trainer.step()
    start, tokens = time.perf_counter(), trainer.tokens
    for _ in range(steps):
        trainer.step()
    return (trainer.tokens - tokens) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small models, one round: a smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores, at most 8)")
    parser.add_argument("--levels", default="char,word", help="comma-separated: char, word")
    parser.add_argument("--tag", default="", help="suffix for the JSON name (keep several results side by side)")
    parser.add_argument("--precisions", default="fp32,bf16", help="charrnn arms: comma-separated fp32, bf16")
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory for the JSON")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    from charrnn.core.runtime import set_threads

    set_threads(args.threads)
    steps = 10 if args.quick else 20  # charrnn reports windows of 10 steps; the first is warm-up
    tmp = Path(tempfile.mkdtemp(prefix="charrnn-bench-"))
    cases = [
        Case("char", "char", TINY_SHAKESPEARE, 128, 512, 2, 64, 128, None, ("full",)),
        Case("word", "word", word_corpus(tmp), 512, 512, 2, 64, 35, WORD_VOCAB, ("adaptive", "full")),
    ]
    cases = [c for c in cases if c.name in args.levels.split(",")]
    if args.quick:
        cases = [replace(c, hidden=128, embed=min(c.embed, 128), batch=16, bptt=min(c.bptt, 64)) for c in cases]

    from charrnn.core.precision import bf16_kernel_runs

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    skipped: dict[str, str] = {}
    if "bf16" in precisions and not bf16_kernel_runs("lstm", torch.device("cpu")):
        skipped["bf16"] = "this CPU's PyTorch has no bf16 LSTM kernel (it needs avx512_bf16 or AMX)"
        console.print(f"[yellow]bf16 arms skipped: {skipped['bf16']}[/]")
    precisions = [p for p in precisions if p not in skipped]
    results: list[dict[str, Any]] = []
    for case in cases:
        text = read_corpus(case.corpus)
        tokenizer = build_tokenizer(text, TokenizerConfig(level=case.level, vocab_size=case.vocab_cap))
        ids = encode_ids(tokenizer, text)
        vocab = tokenizer.vocab_size
        rec_flops = recurrent_train_flops("lstm", case.embed, case.hidden, case.layers)
        flops = {"reference": rec_flops + softmax_train_flops(case.hidden, vocab), "full": 0.0, "adaptive": 0.0}
        flops["full"] = flops["reference"]
        cutoffs = default_adaptive_cutoffs(vocab)
        flops["adaptive"] = rec_flops + adaptive_train_flops(case.hidden, cutoffs, vocab, ids)
        arms = [(s, p) for s in case.charrnn_softmaxes for p in precisions]  # (softmax, precision)
        speeds: dict[str, list[float]] = {"reference": []} | {arm_key(s, p): [] for s, p in arms}
        gemms: list[float] = []
        for r in range(rounds):
            console.print(f"[bold]{case.name}[/] round {r + 1}/{rounds} (vocab {vocab:,})")
            gemms.append(gemm_gflops())
            torch.manual_seed(r)
            model = reference.RNNModel("lstm", vocab, case.embed, case.hidden, case.layers, dropout=0.2)
            ref_steps = steps // 2  # the reference's timed steps (charrnn's second window is 10 steps too)
            speeds["reference"].append(run_reference(model, ids, case, ref_steps))
            del model
            for softmax, precision in arms:
                speeds[arm_key(softmax, precision)].append(
                    run_charrnn(case, softmax, steps, tmp, args.threads, precision)
                )
            console.print({k: round(v[-1]) for k, v in speeds.items()})
        gemm = max(gemms)
        ref = speeds["reference"]
        for key, values in speeds.items():
            impl, _, precision = key.partition(", ")
            ratios = [v / r for v, r in zip(values, ref, strict=True)]
            tok_s = median(values)
            results.append(
                {
                    "case": case.name,
                    "implementation": "reference"
                    if impl == "reference"
                    else f"charrnn ({impl} softmax{', ' + precision if precision else ''})",
                    "precision": precision or "fp32",
                    "vocab": vocab,
                    "config": {
                        "embed": case.embed,
                        "hidden": case.hidden,
                        "layers": case.layers,
                        "batch": case.batch,
                        "bptt": case.bptt,
                        "adaptive_cutoffs": cutoffs if impl == "adaptive" else None,
                    },
                    "tokens_per_second": tok_s,
                    "tokens_per_second_rounds": values,
                    "ratio_vs_reference": median(ratios),
                    "ratio_rounds": ratios,
                    "train_flops_per_token": flops[impl],
                    "gflops": flops[impl] * tok_s / 1e9,
                    "gemm_gflops": gemm,
                    "fraction_of_gemm": flops[impl] * tok_s / 1e9 / gemm,
                }
            )
    shutil.rmtree(tmp, ignore_errors=True)
    print_table(
        f"training throughput ({rounds} interleaved rounds, {torch.get_num_threads()} threads)",
        ["case", "implementation", "vocab", "tokens/s", "x reference", "GFLOP/s", "of matmul"],
        [
            (
                r["case"],
                r["implementation"],
                r["vocab"],
                r["tokens_per_second"],
                f"{r['ratio_vs_reference']:.2f}x",
                r["gflops"],
                f"{100 * r['fraction_of_gemm']:.0f}%",
            )
            for r in results
        ],
    )
    console.print(f"torch.matmul 1024^3 fp32: {results[0]['gemm_gflops']:.0f} GFLOP/s (best of the rounds)")
    for precision, reason in skipped.items():
        console.print(f"{precision}: skipped ({reason})")
    write_json(
        ("train_throughput_quick" if args.quick else "train_throughput") + (f"_{args.tag}" if args.tag else ""),
        {"rounds": rounds, "threads": torch.get_num_threads(), "results": results, "skipped": skipped},
        args.results,
    )


if __name__ == "__main__":
    main()
