"""Where a training step's time goes: torch.profiler over charrnn's training loop.

    python bench/profile_train.py            # char 2x512 LSTM (batch 64, bptt 128) and word 33k adaptive
    python bench/profile_train.py --quick    # small models

Prints the operators with the most self CPU time and writes the summary to bench/results/.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import TINY_SHAKESPEARE, console, print_table, write_json  # noqa: E402
from bench.train_throughput import WORD_VOCAB, word_corpus  # noqa: E402
from charrnn.core.config import TokenizerConfig  # noqa: E402
from charrnn.core.runtime import set_threads  # noqa: E402
from charrnn.core.state import SilentReporter  # noqa: E402
from charrnn.lm.config import LMTrainConfig, ModelConfig, RunConfig  # noqa: E402
from charrnn.lm.training import train_language_model  # noqa: E402


class ProfiledSteps(SilentReporter):
    """Starts the profiler after the first window of 10 steps (warm-up) and stops it after the next."""

    def __init__(self, prof: profile) -> None:
        self.prof, self.windows = prof, 0

    def step(self, record: dict[str, Any]) -> None:
        self.windows += 1
        if self.windows == 1:
            self.prof.start()
        elif self.windows == 2:
            self.prof.stop()


def profile_case(name: str, config: RunConfig, run_dir: Path, top: int) -> list[dict[str, Any]]:
    prof = profile(activities=[ProfilerActivity.CPU])
    train_language_model(config, run_dir, reporter=ProfiledSteps(prof), overwrite=True)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    summary = [
        {
            "op": e.key,
            "self_cpu_ms": e.self_cpu_time_total / 1000,
            "share": e.self_cpu_time_total / total,
            "calls": e.count,
        }
        for e in rows
    ]
    print_table(
        f"{name}: top operators by self CPU time over 10 training steps",
        ["operator", "self CPU ms", "share", "calls"],
        [(r["op"], r["self_cpu_ms"], f"{100 * r['share']:.1f}%", r["calls"]) for r in summary],
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    set_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="charrnn-profile-"))
    hidden = 128 if args.quick else 512
    # epochs pinned to 50, the old default (now no epoch limit when max_steps is given); never binds at 20 steps
    common = {
        "epochs": 50,
        "max_steps": 20,
        "eval_tokens": 5_000,
        "schedule": "constant",
        "threads": args.threads,
    }
    cases = {
        "char": RunConfig(
            tokenizer=TokenizerConfig(level="char"),
            model=ModelConfig(embed=128, hidden=hidden, layers=2),
            training=LMTrainConfig(batch_size=64, bptt=128, **common),
            corpus=str(TINY_SHAKESPEARE),
        ),
        "word-adaptive": RunConfig(
            tokenizer=TokenizerConfig(level="word", vocab_size=WORD_VOCAB),
            model=ModelConfig(embed=hidden, hidden=hidden, layers=2, softmax="adaptive"),
            training=LMTrainConfig(batch_size=64, bptt=35, **common),
            corpus=str(word_corpus(tmp)),
        ),
    }
    results = {name: profile_case(name, cfg, tmp / name, args.top) for name, cfg in cases.items()}
    console.print(f"threads: {torch.get_num_threads()}")
    write_json("profile_train_quick" if args.quick else "profile_train", {"top_ops": results})


if __name__ == "__main__":
    main()
