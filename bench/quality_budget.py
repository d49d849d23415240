"""Validation loss after a wall-clock budget: `charrnn train` defaults against the reference loop.

    python bench/quality_budget.py                # 10 minutes each on Tiny Shakespeare
    python bench/quality_budget.py --quick        # 1 minute each, a smoke run

Both models train on the first 90% of Tiny Shakespeare and are scored (nats/char) on the
last 10%. The two runs are interleaved in time slices (`--slice`, default 60 s): charrnn
trains for a slice through the library's own `train_language_model` with the CLI defaults
and `--max-time` (stopping via its stop hook and resuming, which is bit-exact), then the
reference trains for a slice, and so on. Each run's clock counts only its own slices
(including its own evaluations), so both see the same machine load even on a shared machine.
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
from bench.common import (  # noqa: E402
    RESULTS,
    TINY_SHAKESPEARE,
    console,
    interpolate,
    print_table,
    save_plot,
    write_json,
)
from charrnn.core.config import TokenizerConfig  # noqa: E402
from charrnn.core.rundir import read_metrics  # noqa: E402
from charrnn.core.state import SilentReporter  # noqa: E402
from charrnn.core.text import read_corpus  # noqa: E402
from charrnn.core.tokenizers import build_tokenizer  # noqa: E402
from charrnn.lm.config import LMTrainConfig, ModelConfig, RunConfig  # noqa: E402
from charrnn.lm.training import train_language_model  # noqa: E402
from charrnn.lm.truncated_bptt import encode_ids, split_train_val  # noqa: E402

LN2 = math.log(2.0)
REFERENCE = {"cell": "lstm", "embed": 128, "hidden": 256, "layers": 2, "dropout": 0.2, "batch": 32, "bptt": 128}


class Deadline:
    """A stop hook for `train_language_model`: True once the slice's wall time is used."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def __call__(self) -> bool:
        return time.perf_counter() >= self.end


def charrnn_config(minutes: float) -> RunConfig:
    """What `charrnn train corpora/tinyshakespeare.txt --max-time MINUTES` built: every default.

    `epochs` is pinned to 50, the default when these figures were recorded (the default is now no
    epoch limit when --max-time is given); the CPU runs recorded here got through 3.5 epochs in 10 minutes.
    """
    return RunConfig(
        tokenizer=TokenizerConfig(),
        model=ModelConfig(),
        training=LMTrainConfig(max_time=minutes, epochs=50),
        corpus=str(TINY_SHAKESPEARE),
    )


def charrnn_curve(run_dir: Path) -> list[tuple[float, float]]:
    """(training seconds, validation loss) of every evaluation charrnn logged."""
    points = {round(r["elapsed"], 2): r["val_loss"] for r in read_metrics(run_dir) if "val_loss" in r}
    return sorted(points.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=None, help="budget per model (default 10; quick 1)")
    parser.add_argument("--quick", action="store_true", help="1 minute each: a smoke run")
    parser.add_argument("--slice", type=float, default=60.0, help="seconds per interleaved slice")
    parser.add_argument("--eval-every", type=float, default=30.0, help="reference: evaluate every N seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores, at most 8)")
    args = parser.parse_args()
    minutes = args.minutes or (1.0 if args.quick else 10.0)
    budget = minutes * 60
    slice_s = min(args.slice, budget)
    from charrnn.core.runtime import set_threads

    set_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="charrnn-quality-"))
    run_dir = tmp / "charrnn-run"

    # The reference reads the same split: the char ids of the corpus, last 10% held out.
    text = read_corpus(TINY_SHAKESPEARE)
    tokenizer = build_tokenizer(text, TokenizerConfig(level="char"))
    train_ids, val_ids = split_train_val(encode_ids(tokenizer, text), 0.1)
    torch.manual_seed(1234)
    ref_model = reference.RNNModel(
        REFERENCE["cell"],
        tokenizer.vocab_size,
        REFERENCE["embed"],
        REFERENCE["hidden"],
        REFERENCE["layers"],
        REFERENCE["dropout"],
    )
    trainer = reference.ReferenceTrainer(
        ref_model, train_ids, REFERENCE["batch"], REFERENCE["bptt"], lr=3e-3, clip=1.0
    )
    ref_clock, ref_curve, next_eval = 0.0, [], args.eval_every

    charrnn_clock = 0.0
    session = 0
    config = charrnn_config(minutes)
    config.training.threads = args.threads  # a runtime setting, like --threads on the command line
    console.print(
        f"charrnn defaults: {config.model.cell} {config.model.layers}x{config.model.hidden}, embed {config.model.embed}, "
        f"dropout {config.model.dropout}, batch {config.training.batch_size}, bptt {config.training.bptt}, "
        f"{config.training.optimizer} lr {config.training.lr}, schedule {config.training.schedule}"
    )
    wall_start = time.perf_counter()
    while charrnn_clock < budget - 0.5 or ref_clock < budget - 0.5:
        if charrnn_clock < budget - 0.5:
            remaining = budget - charrnn_clock
            # On resume the engine takes `config` as the run's own: it is the object the first session
            # wrote to config.json (vocabulary size filled in), changed only in max_time, which may change
            # on resume, as with `charrnn train --resume RUN --max-time M`.
            config.training.max_time = remaining / 60
            result = train_language_model(
                config,
                run_dir,
                resume=session > 0,
                reporter=SilentReporter(),
                should_stop=Deadline(min(slice_s, remaining)),
            )
            session += 1
            # its clock: the training seconds it logged (its own evaluations included)
            charrnn_clock = budget if result.stop_reason != "interrupted" else _elapsed(run_dir)
        if ref_clock < budget - 0.5:
            target = min(ref_clock + slice_s, budget)
            while ref_clock < target:
                start = time.perf_counter()
                trainer.run_for(min(next_eval, target) - ref_clock)
                ref_clock += time.perf_counter() - start
                if ref_clock >= next_eval or ref_clock >= budget:
                    start = time.perf_counter()
                    ref_curve.append((ref_clock, reference.evaluate(ref_model, val_ids, 32, REFERENCE["bptt"])))
                    ref_clock += time.perf_counter() - start
                    next_eval += args.eval_every
        console.print(
            f"[{time.perf_counter() - wall_start:6.0f}s wall] charrnn {charrnn_clock:6.0f}s "
            f"val {charrnn_curve(run_dir)[-1][1]:.4f} | reference {ref_clock:6.0f}s val "
            f"{ref_curve[-1][1] if ref_curve else float('nan'):.4f}"
        )

    ch_curve = charrnn_curve(run_dir)
    ref_final = reference.evaluate(ref_model, val_ids, 32, REFERENCE["bptt"])
    ch_final = ch_curve[-1][1]
    marks = list(range(60, int(budget) + 1, 60)) or [int(budget)]
    rows, comparisons = [], []
    for mark in marks:
        ch, ref = _at(ch_curve, mark), _at(ref_curve, mark)
        ch = ch if ch is not None else (ch_final if mark >= ch_curve[-1][0] else None)
        ref = ref if ref is not None else (ref_final if mark >= ref_curve[-1][0] else None)
        better = None if ch is None or ref is None else ch < ref
        comparisons.append({"seconds": mark, "charrnn": ch, "reference": ref, "charrnn_better": better})
        rows.append((f"{mark / 60:g} min", ch, ref, None if better is None else ref - ch, _yes(better)))
    rows.append(("final", ch_final, ref_final, ref_final - ch_final, _yes(ch_final < ref_final)))
    print_table(
        f"validation nats/char on the last 10% of Tiny Shakespeare, {minutes:g} min each (interleaved)",
        ["time", "charrnn", "reference", "reference - charrnn", "charrnn better"],
        rows,
    )
    print_table(
        "final",
        ["model", "nats/char", "bits/char", "steps", "tokens seen"],
        [
            ("charrnn defaults", ch_final, ch_final / LN2, _last(run_dir, "step"), _tokens(run_dir, config)),
            ("reference 2x256", ref_final, ref_final / LN2, trainer.steps, trainer.tokens),
        ],
    )
    target_met = ch_final <= 1.42 and all(
        c["charrnn_better"] for c in comparisons if c["charrnn_better"] is not None
    )
    console.print(
        f"target (<= 1.42 nats/char and better at every minute mark): {'met' if target_met else 'missed'}"
    )
    name = "quality_budget_quick" if args.quick else "quality_budget"
    save_plot(
        RESULTS / f"{name}.png",
        {"charrnn defaults": ch_curve, "reference 2x256 (plain loop)": ref_curve + [(ref_clock, ref_final)]},
        "training seconds",
        "validation nats/char",
        f"Tiny Shakespeare, {minutes:g} min on {torch.get_num_threads()} threads",
    )
    write_json(
        name,
        {
            "minutes": minutes,
            "slice_seconds": slice_s,
            "wall_seconds": time.perf_counter() - wall_start,
            "charrnn_config": {"model": vars(config.model), "training": vars(config.training)},
            "reference_config": REFERENCE | {"optimizer": "adamw", "lr": 3e-3, "clip": 1.0},
            "charrnn_final": ch_final,
            "reference_final": ref_final,
            "charrnn_curve": ch_curve,
            "reference_curve": ref_curve,
            "minute_marks": comparisons,
            "target_met": target_met,
        },
    )
    shutil.rmtree(tmp, ignore_errors=True)


def _at(curve: list[tuple[float, float]], mark: float) -> float | None:
    """The curve at `mark` seconds; the first evaluation when it came less than 5 s after the mark."""
    value = interpolate(curve, mark)
    if value is None and curve and 0 <= curve[0][0] - mark < 5.0:
        value = curve[0][1]
    return value


def _elapsed(run_dir: Path) -> float:
    return max((r.get("elapsed", 0.0) for r in read_metrics(run_dir)), default=0.0)


def _last(run_dir: Path, key: str) -> Any:
    values = [r[key] for r in read_metrics(run_dir) if key in r]
    return values[-1] if values else None


def _tokens(run_dir: Path, config: RunConfig) -> int | None:
    step = _last(run_dir, "step")
    return None if step is None else step * config.training.batch_size * config.training.bptt


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "NO")


if __name__ == "__main__":
    main()
