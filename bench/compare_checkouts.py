"""Training speed of two checkouts of charrnn, interleaved: is a change slower per step?

    python bench/compare_checkouts.py --before ../charrnn-old --after . --name ab_speed_issue20

Each round trains the default model on Tiny Shakespeare for `--steps` steps with one checkout, then
with the other (a fresh process each, `PYTHONPATH` pointing at the checkout), and takes the median
tokens/s of the step records after the first 20 steps (warm-up and first-call costs left out). The
table gives each checkout's median over the rounds and their ratio; the JSON records every round and
the load average before and after. Make the "before" checkout with `git worktree add --detach DIR COMMIT`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import console, print_table, write_json  # noqa: E402

SKIPPED_STEPS = 20  # the first steps' records are left out of the median


def step_speed(checkout: Path, steps: int, work: Path) -> float:
    """Median tokens/s of one `charrnn train` of the default model with the code of `checkout`."""
    run = work / "run"
    env = {**os.environ, "PYTHONPATH": str(checkout), "CHARRNN_CACHE": str(work / "cache")}
    command = [sys.executable, "-m", "charrnn", "train", str(checkout / "corpora" / "tinyshakespeare.txt"),
               "--max-steps", str(steps), "--log-every", "10", "--eval-every", "100000", "--out", str(run),
               "--overwrite"]  # fmt: skip
    subprocess.run(command, env=env, check=True, cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    speeds = [r["tokens_per_second"] for r in records if "train_loss" in r and r["step"] > SKIPPED_STEPS]
    return statistics.median(speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the checkout before the change")
    parser.add_argument("--after", type=Path, default=Path("."), help="the checkout after it (default: here)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=70, help="steps per run")
    parser.add_argument("--name", default="compare_checkouts", help="results file name")
    args = parser.parse_args()
    if args.steps < SKIPPED_STEPS + 10:
        parser.error(f"--steps must be at least {SKIPPED_STEPS + 10}: the first {SKIPPED_STEPS} are not timed")
    arms = {"before": args.before.resolve(), "after": args.after.resolve()}
    load = [os.getloadavg()]
    speeds: dict[str, list[float]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory(prefix="charrnn-compare-") as tmp:
        for round_ in range(args.rounds):
            for name, checkout in arms.items():
                work = Path(tmp) / name
                work.mkdir(exist_ok=True)
                speeds[name].append(step_speed(checkout, args.steps, work))
                console.print(f"round {round_ + 1}/{args.rounds}: {name} {speeds[name][-1]:,.0f} tokens/s")
    load.append(os.getloadavg())
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    ratio = medians["after"] / medians["before"]
    print_table(
        f"training tokens/s, default model, median of {args.rounds} interleaved rounds",
        ["checkout", "path", "median tokens/s", "ratio"],
        [
            (name, str(arms[name]), f"{medians[name]:,.0f}", f"{medians[name] / medians['before']:.3f}")
            for name in arms
        ],
    )
    write_json(args.name, {"checkouts": {k: str(v) for k, v in arms.items()}, "rounds": speeds, "median": medians,
                           "ratio_after_to_before": ratio, "steps": args.steps, "load": load})  # fmt: skip


if __name__ == "__main__":
    main()
