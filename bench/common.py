"""Shared helpers for the benchmarks: machine info, GEMM roofline, FLOP counts, tables, JSON, plots."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SHARED_CORPORA = REPO.parent / "shared" / "corpora"
TINY_SHAKESPEARE = REPO / "corpora" / "tinyshakespeare.txt"
WIKITEXT2 = SHARED_CORPORA / "wikitext-2"

console = Console(width=None if sys.stdout.isatty() else 150)  # full-width tables in logs too


def cpu_model() -> str:
    """The CPU's model name (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    """Total RAM in GiB (Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def git_commit() -> str | None:
    """The checked-out commit, with "+changes" when tracked files differ from it (the run measured those)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        )
    except OSError:
        return None
    commit = out.stdout.strip()
    return (commit + ("+changes" if changed.stdout.strip() else "")) or None


_START_COMMIT: str | None = None
_START_LOAD: list[float] = []


def machine_info() -> dict[str, Any]:
    """Where and when a benchmark ran."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": cores,
        "memory_gib": memory_gib(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "load_average_at_start": _START_LOAD,  # before the benchmark's own threads ran
        "load_average": [round(x, 2) for x in os.getloadavg()],  # now: at the end, its own threads included
        "git_commit": _START_COMMIT,  # the code the run started with
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
    }


def write_json(name: str, payload: dict[str, Any], directory: Path = RESULTS) -> Path:
    """Write `payload` (plus machine info) to <directory>/<name>.json (default bench/results/)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    data = {"machine": machine_info(), **payload}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return path


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table; the first column left-aligned, the rest right-aligned."""
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*[fmt(v) for v in row])
    console.print(table)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def gemm_gflops(n: int = 1024, repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s that torch.matmul reaches on an n x n x n product (best of `repeats`): the practical limit."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def recurrent_train_flops(cell: str, embed: int, hidden: int, layers: int) -> float:
    """FLOPs per token of one training step (forward + backward ~ 3x forward) through the recurrent stack."""
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    total = 0.0
    for layer in range(layers):
        inputs = embed if layer == 0 else hidden
        total += 2 * gates * hidden * (inputs + hidden)
    return 3 * total


def softmax_train_flops(hidden: int, vocab: int) -> float:
    """FLOPs per token of a full-softmax output layer, forward + backward."""
    return 3 * 2 * hidden * vocab


def adaptive_train_flops(
    hidden: int, cutoffs: Sequence[int], vocab: int, ids: torch.Tensor, div: float = 4.0
) -> float:
    """Expected FLOPs per token of nn.AdaptiveLogSoftmaxWithLoss in training, given the token frequencies."""
    bounds = list(cutoffs) + [vocab]
    counts = torch.bincount(ids.long(), minlength=vocab).double()
    total = counts.sum()
    flops = 2 * hidden * (bounds[0] + len(bounds) - 1)  # head: shortlist + one logit per tail cluster
    for i in range(len(bounds) - 1):
        size = bounds[i + 1] - bounds[i]
        proj = int(hidden // (div ** (i + 1)))
        share = float(counts[bounds[i] : bounds[i + 1]].sum() / total)
        flops += share * 2 * (hidden * proj + proj * size)
    return 3 * flops


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def save_plot(
    path: Path, curves: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, title: str
) -> bool:
    """Draw curves to a PNG with matplotlib; returns False (with a message) when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("[yellow]matplotlib is not installed: skipping the PNG (pip install matplotlib)[/]")
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker=".", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    console.print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return True


def interpolate(points: Sequence[tuple[float, float]], x: float) -> float | None:
    """Linear interpolation of a curve at `x`; None outside its range."""
    if not points or x < points[0][0] or x > points[-1][0]:
        return None
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


_START_COMMIT = git_commit()
_START_LOAD = [round(x, 2) for x in os.getloadavg()]
