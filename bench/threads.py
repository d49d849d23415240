"""Threads under load: 1 against 2 threads (and OpenMP's passive wait policy), idle and beside a busy process.

    python bench/threads.py                     # 20 s per measurement, 3 rounds
    python bench/threads.py --quick --out /tmp/threads.json

Two workloads on charrnn's default char model shape (`ModelConfig()`'s cell sizes, 65 symbols, fp32):
  train    forward + backward + AdamW step, batch 32, bptt 128 (tokens/s)
  train-bf16  the same under bf16 autocast (on a CPU with bf16 instructions)
  sample   one stream, one token at a time (tokens/s): what `charrnn sample` does
Thread settings, each in a fresh process (OpenMP reads its environment when torch loads):
  1 thread; 2 threads; 2 threads with OMP_WAIT_POLICY=PASSIVE (waiting threads sleep instead of
  spinning, so they give the core back to whatever else runs).
Conditions: idle, and `--competitors` CPU-bound processes (a Python busy loop each) running beside.
Rounds interleave every setting and condition so they see the same machine. Run it on a machine with
nothing else running; the table's "vs 1 thread" column is what the default threads are chosen by:
under load, 2 threads should never be more than 10% slower than 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, machine_info, median, print_table  # noqa: E402

SETTINGS = {  # name: (threads, extra environment)
    "1 thread": (1, {}),
    "2 threads": (2, {}),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
}
WORKLOADS = ("train", "train-bf16", "sample")


def worker(workload: str, threads: int, seconds: float) -> float:
    """Run one workload for about `seconds` in this process; tokens per second."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from charrnn.lm.config import ModelConfig  # after torch: OpenMP has read this process's wait policy

    shape = ModelConfig()  # the defaults of `charrnn train`
    embed = nn.Embedding(65, shape.embed)
    rnn = nn.LSTM(shape.embed, shape.hidden, shape.layers, batch_first=True)
    head = nn.Linear(shape.hidden, 65)
    params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]
    if workload.startswith("train"):
        optimizer = torch.optim.AdamW(params, lr=1e-3)
        x = torch.randint(0, 65, (32, 128))
        bf16 = workload == "train-bf16"  # bf16 autocast, as `--precision bf16` (needs avx512_bf16 or AMX)

        def step() -> int:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out, _ = rnn(embed(x))
                logits = head(out)
            loss = nn.functional.cross_entropy(logits.float().reshape(-1, 65), x.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return x.numel()

    else:
        state = None
        token = torch.zeros(1, 1, dtype=torch.long)

        @torch.inference_mode()
        def step() -> int:
            nonlocal state, token
            for _ in range(50):
                out, state = rnn(embed(token), state)
                token = torch.multinomial(torch.softmax(head(out[:, -1]), -1), 1)
            return 50

    step()  # warm up
    tokens, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        tokens += step()
    return tokens / (time.perf_counter() - started)


def measure(workload: str, setting: str, seconds: float) -> float:
    """Tokens per second of one workload under one thread setting, in a fresh process."""
    threads, extra = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # the setting decides the policy
    env.update(extra, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(
        [sys.executable, __file__, "--worker", workload, "--threads", str(threads), "--seconds", str(seconds)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--competitors", type=int, default=1, help="busy processes in the loaded condition")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--quick", action="store_true", help="3 s per measurement, one round")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "threads.json")
    parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(worker(args.worker, args.threads, args.seconds))
        return
    if args.quick:
        args.seconds, args.rounds = 3.0, 1
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    results: dict[str, list[float]] = {}
    load_start = os.getloadavg()
    for round_index in range(args.rounds):
        for condition in ("idle", "loaded"):
            competitors = []
            if condition == "loaded":
                competitors = [
                    subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.competitors)
                ]
                time.sleep(1.0)
            try:
                for workload in workloads:
                    for setting in SETTINGS:
                        rate = measure(workload, setting, args.seconds)
                        results.setdefault(f"{workload}|{condition}|{setting}", []).append(rate)
                        print(
                            f"round {round_index + 1} {workload} {condition} {setting}: {rate:,.0f} tokens/s",
                            flush=True,
                        )
            finally:
                for process in competitors:
                    process.kill()
                    process.wait()
    rows, table = [], []
    for workload in workloads:
        for condition in ("idle", "loaded"):
            one = median(results[f"{workload}|{condition}|1 thread"])
            for setting in SETTINGS:
                rate = median(results[f"{workload}|{condition}|{setting}"])
                rows.append([f"{workload}, {condition}", setting, rate, rate / one])
                table.append(
                    {"workload": workload, "condition": condition, "setting": setting, "tokens_per_second": rate,
                     "vs_1_thread": rate / one, "all": results[f"{workload}|{condition}|{setting}"]}
                )  # fmt: skip
    print_table(
        f"threads: median of {args.rounds} round(s), {args.seconds:g} s each; loaded = {args.competitors} busy process(es)",
        ["workload, condition", "setting", "tokens/s", "vs 1 thread"],
        rows,
    )
    payload = {
        "machine": machine_info(),
        "benchmark": "1 vs 2 threads, idle and beside CPU-bound processes",
        "seconds": args.seconds,
        "rounds": args.rounds,
        "competitors": args.competitors,
        "load_average_start": list(load_start),
        "load_average_end": list(os.getloadavg()),
        "results": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
