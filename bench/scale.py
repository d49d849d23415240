"""Scale: a corpus of 1 GB or more, prepared into a token cache, trained with bounded memory, on 1 or 2 processes.

    python bench/scale.py                                    # >= 1 GB corpus in bench/results/scale-work/
    python bench/scale.py --size-mb 20 --work /tmp/scale --json /tmp/scale.json --train-steps 20   # smoke run

The corpus is assembled from every .txt file under ../shared/corpora: their lines, shuffled (seed 0),
written again and again (reshuffled each time) until it holds --size-mb MB. Then, each command in its
own process (its peak RSS from wait4):
  1. `charrnn prepare --level char` and `--level word` on a cold cache: MB/s of the whole command and
     of the tokenizing pass alone, and the size of the token file;
  2. `charrnn train --max-steps N` on the warm char cache: peak RSS;
  3. the time from starting `charrnn train` to its first training step (warm cache);
  4. tokens/s of `--nproc 2 --threads 1` against one process with `--threads 1`, alternated --rounds
     times (global batch 2 x --batch-size against --batch-size: the same work per process).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, RESULTS, SHARED_CORPORA, console, machine_info, median, print_table  # noqa: E402

TARGETS = {
    "char_prepare_mb_s": ">= 50",
    "word_prepare_mb_s": ">= 10",
    "train_peak_rss_mib": "< 1536",
    "first_step_seconds": "< 5",
    "two_vs_one_process": ">= 1.6",
}


def assemble(path: Path, size_mb: int, corpora: Path) -> int:
    """Write >= size_mb MB of shuffled lines of the shared corpora to `path` (kept when already big enough)."""
    target = size_mb * 1_000_000
    if path.is_file() and path.stat().st_size >= target:
        return path.stat().st_size
    lines: list[str] = []
    for source in sorted(corpora.rglob("*.txt")):
        lines += [
            line for line in source.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()
        ]
    if not lines:
        raise SystemExit(f"no .txt corpora under {corpora}; pass --corpora")
    rng = random.Random(0)
    written = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        while written < target:
            rng.shuffle(lines)
            block = "\n".join(lines) + "\n"
            out.write(block)
            written += len(block.encode("utf-8"))
    return path.stat().st_size


def measured(command: list[str], cwd: Path, watch: Path | None = None) -> dict[str, Any]:
    """Run `command`; its seconds, peak RSS (MiB), exit code, and (with `watch`) when that file first had a step."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CI": "true"}
    logs = cwd / "last-command.log"
    started = time.perf_counter()
    first_step = None
    with logs.open("w") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if (
                watch is not None
                and first_step is None
                and watch.is_file()
                and '"train_loss"' in watch.read_text()
            ):
                first_step = time.perf_counter() - started
            time.sleep(0.02)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed ({code}):\n{logs.read_text()[-3000:]}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "first_step": first_step}


def charrnn(*args: str) -> list[str]:
    return [sys.executable, "-m", "charrnn", *args]


def cache_header(cache: Path) -> dict[str, Any]:
    headers = [json.loads(p.read_text()) for p in cache.glob("tokens-*/header.json")]
    return headers[0]


def train_speed(metrics: Path) -> float:
    """Median tokens/s of a run's logged windows, the first (warm-up) one left out."""
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    speeds = [r["tokens_per_second"] for r in records if "tokens_per_second" in r][1:]
    return median(speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="corpus size in MB (default 1024)")
    parser.add_argument("--corpora", type=Path, default=SHARED_CORPORA, help="folder of real .txt corpora")
    parser.add_argument("--work", type=Path, default=RESULTS / "scale-work", help="corpus, caches and runs")
    parser.add_argument("--json", type=Path, default=RESULTS / "scale.json", help="where the figures go")
    parser.add_argument("--train-steps", type=int, default=200, help="steps of the peak-RSS run")
    parser.add_argument("--speed-steps", type=int, default=60, help="steps of each tokens/s run")
    parser.add_argument("--rounds", type=int, default=2, help="alternated 1- and 2-process runs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="--hidden 256 --embed 128 --layers 2 --bptt 128", help="model flags")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.txt"
    size = assemble(corpus, args.size_mb, args.corpora)
    console.print(f"corpus {corpus}: {size / 1e6:,.0f} MB")
    model = args.model.split()
    result: dict[str, Any] = {"corpus_mb": size / 1e6, "targets": TARGETS}

    rows = []
    for level in ("char", "word"):
        cache = work / f"cache-{level}"
        shutil.rmtree(cache, ignore_errors=True)
        run = measured(charrnn("prepare", str(corpus), "--level", level, "--cache-dir", str(cache)), work)
        header = cache_header(cache)
        tokens_file = next(cache.glob("tokens-*/tokens.bin"))
        figures = {
            "command_mb_s": size / 1e6 / run["seconds"],
            "tokenize_mb_s": header["bytes"] / 1e6 / header["seconds"],
            "cache_mb": tokens_file.stat().st_size / 1e6,
            "tokens": header["tokens"],
            "dtype": header["dtype"],
            "peak_rss_mib": run["peak_rss_mib"],
        }
        result[f"{level}_prepare"] = figures
        result[f"{level}_prepare_mb_s"] = figures["command_mb_s"]
        rows.append(
            [level, figures["command_mb_s"], figures["tokenize_mb_s"], figures["cache_mb"], run["peak_rss_mib"]]
        )
    print_table(
        "prepare (cold cache)", ["level", "MB/s (command)", "MB/s (tokenize)", "cache MB", "peak RSS MiB"], rows
    )

    char_cache = str(work / "cache-char")
    common = ["--cache-dir", char_cache, "--batch-size", str(args.batch_size), *model, "--threads", "1"]
    train_run = work / "run-rss"
    rss = measured(
        charrnn("train", str(corpus), "--out", str(train_run), "--overwrite", "--max-steps", str(args.train_steps),
                "--log-every", "1", *common),
        work,
        watch=train_run / "metrics.jsonl",
    )  # fmt: skip
    result["train_peak_rss_mib"] = rss["peak_rss_mib"]
    result["first_step_seconds"] = rss["first_step"]

    speeds: dict[str, list[float]] = {"1 process": [], "2 processes": []}
    for _ in range(args.rounds):
        for label, extra in (("1 process", []), ("2 processes", ["--nproc", "2"])):
            out = work / "run-speed"
            measured(
                charrnn("train", str(corpus), "--out", str(out), "--overwrite", "--max-steps", str(args.speed_steps),
                        "--log-every", "5", "--eval-every", "100000", "--eval-tokens", "1000", *common, *extra),
                work,
            )  # fmt: skip
            speeds[label].append(train_speed(out / "metrics.jsonl"))
    one, two = median(speeds["1 process"]), median(speeds["2 processes"])
    result["tokens_per_second"] = {"one_process": speeds["1 process"], "two_processes": speeds["2 processes"]}
    result["two_vs_one_process"] = two / one
    print_table(
        "train (warm char cache)",
        ["measure", "value", "target"],
        [
            ["peak RSS MiB", rss["peak_rss_mib"], TARGETS["train_peak_rss_mib"]],
            ["command to first step, s", rss["first_step"], TARGETS["first_step_seconds"]],
            ["tokens/s, 1 process x 1 thread", one, ""],
            ["tokens/s, 2 gloo processes x 1 thread", two, ""],
            ["2 processes / 1", two / one, TARGETS["two_vs_one_process"]],
        ],
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine_info(), **result}, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
