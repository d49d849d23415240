"""Command to first step: how long `charrnn train` takes from the command line to its first training step.

    python bench/first_step.py                  # 5 rounds of each arm, the default run
    python bench/first_step.py --quick --out bench/results/first_step_quick.json   # 1 round, a tiny model: checks the script

Arms, each a fresh process, interleaved round by round so that they see the same machine:
  --version          `charrnn --version` (the CLI's start without torch)
  import torch       `python -c "import torch"` (the floor every training command pays)
  cold cache         `charrnn train` with an empty user cache folder: tokenizes the corpus and runs the
                     `--precision auto` speed probe
  warm cache         the same command again: the token cache and the probe's decision are read back
  warm, fp32         `--precision fp32` with the warm cache (no probe at all)
A training arm's time ends when the first step's record reaches metrics.jsonl (`--log-every 1`); the
process is then stopped. Target (issue 20): under 3 s for the default run with a warm cache, on an
idle machine. Run it with nothing else running; the JSON records the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, TINY_SHAKESPEARE, median, print_table, write_json  # noqa: E402

TARGET_WARM_SECONDS = 3.0
QUICK_MODEL = ["--hidden", "32", "--embed", "16", "--layers", "1"]


def timed(command: list[str], env: dict[str, str], cwd: Path, watch: Path | None = None) -> float:
    """Seconds from starting `command` until it exits, or (with `watch`) until that file holds a step."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while process.poll() is None:
            if watch is not None and watch.is_file() and '"train_loss"' in watch.read_text(encoding="utf-8"):
                return time.perf_counter() - started
            time.sleep(0.01)
        if process.returncode != 0 or watch is not None:
            error = process.stderr.read().decode("utf-8", "replace")[-2000:] if process.stderr else ""
            raise SystemExit(f"{' '.join(command)} exited {process.returncode} before a first step:\n{error}")
        return time.perf_counter() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 round with a tiny model: checks the script runs")
    parser.add_argument("--out", type=Path, help="JSON file to write (default bench/results/first_step.json)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    model = QUICK_MODEL if args.quick else []

    work = Path(tempfile.mkdtemp(prefix="charrnn-first-step-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "CI": "true"}  # CI: plain output, no progress bar
    charrnn = [sys.executable, "-m", "charrnn"]
    corpus = work / "tinyshakespeare.txt"
    shutil.copyfile(TINY_SHAKESPEARE, corpus)  # the default run's corpus, under a path of this benchmark

    def train(name: str, cache: Path, *extra: str) -> float:
        out = work / f"run-{name}"
        shutil.rmtree(out, ignore_errors=True)
        command = [*charrnn, "train", str(corpus), "--out", str(out), "--log-every", "1", *model, *extra]
        return timed(command, {**env, "CHARRNN_CACHE": str(cache)}, work, watch=out / "metrics.jsonl")

    times: dict[str, list[float]] = {}
    try:
        for number in range(rounds):
            cache = work / f"cache-{number}"  # empty: the cold arm builds it, the warm arms read it
            arms = {
                "--version": lambda: timed([*charrnn, "--version"], env, work),
                "import torch": lambda: timed([sys.executable, "-c", "import torch"], env, work),
                "cold cache": lambda cache=cache: train("cold", cache),
                "warm cache": lambda cache=cache: train("warm", cache),
                "warm, fp32": lambda cache=cache: train("fp32", cache, "--precision", "fp32"),
            }
            for name, arm in arms.items():
                times.setdefault(name, []).append(arm())
            print(f"round {number + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = [[name, median(values), min(values), max(values)] for name, values in times.items()]
    print_table("command to first step (seconds)", ["arm", "median", "min", "max"], rows)
    warm = median(times["warm cache"])
    met = "met" if warm < TARGET_WARM_SECONDS else "missed"
    print(f"warm-cache default run: {warm:.2f} s against the target of {TARGET_WARM_SECONDS} s: {met}")
    payload = {
        "rounds": rounds,
        "quick": args.quick,
        "seconds": {name: {"median": median(v), "all": v} for name, v in times.items()},
        "target_warm_seconds": TARGET_WARM_SECONDS,
    }
    if args.out is not None:
        write_json(args.out.stem, payload, args.out.parent)
    elif not args.quick:
        write_json("first_step", payload)


if __name__ == "__main__":
    main()
