"""`--precision auto`: bf16 autocast where the device runs it fast, fp32 elsewhere, with the reason.

auto picks bf16 on a CUDA GPU that supports it, and on a CPU only when all three hold:
  1. /proc/cpuinfo reports bf16 instructions (avx512_bf16 or amx_bf16);
  2. PyTorch has a bf16 kernel for the run's cell there (oneDNN's bf16 LSTM needs those instructions);
  3. a short probe of the run's shapes (forward + backward) runs at least `MIN_SPEEDUP` x fp32.
Everything else trains in fp32. Under bf16 autocast only the forward pass's matrix products run in
bf16: the weights, gradients and optimiser state stay fp32, and every model computes its softmax and
loss in fp32 (`.float()` before `log_softmax`/`cross_entropy`).

The speed probe takes a second or more, so its decision is kept in the user cache folder
(`charrnn.core.user_cache`, part precision/), keyed by the machine (host name, CPU model and flags,
core count), the torch version, the thread count and the probe's shapes: auto probes again when any
of them changes, or after `charrnn cache clear`. Within a process it is also cached (`functools.cache`).
`decide` holds the logic, with the flags and probes passed in, so tests can give it any machine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from charrnn.core.runtime import autocast

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
MIN_SPEEDUP = 1.2  # bf16 must beat fp32 tokens/s by this factor on a CPU for auto to choose it


@dataclass(frozen=True)
class ProbeShape:
    """The shapes a speed probe trains: the run's cell and sizes, with batch and time capped."""

    cell: str
    embed: int
    hidden: int
    layers: int
    vocab: int
    batch: int
    time: int


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run trains in and why."""

    precision: str  # fp32, bf16 or fp16: never auto
    reason: str


def decide(
    device_type: str,
    *,
    cuda_bf16: bool = False,
    cpu_flags: frozenset[str] = frozenset(),
    kernel_runs: Callable[[], bool] = lambda: False,
    speedup: Callable[[], float] = lambda: 0.0,
    cell: str = "lstm",
) -> PrecisionChoice:
    """What auto picks, from the device's facts; the probes are called only when the flags allow bf16."""
    if device_type == "cuda":
        if cuda_bf16:
            return PrecisionChoice("bf16", "auto: this CUDA GPU supports bf16")
        return PrecisionChoice("fp32", "auto: this CUDA GPU has no bf16 support")
    if device_type != "cpu":
        return PrecisionChoice("fp32", f"auto: bf16 is chosen only on CUDA GPUs and bf16 CPUs, not {device_type}")
    found = [flag for flag in BF16_CPU_FLAGS if flag in cpu_flags]
    if not found:
        return PrecisionChoice("fp32", "auto: this CPU reports no bf16 instructions (avx512_bf16 or amx_bf16)")
    if not kernel_runs():
        return PrecisionChoice(
            "fp32", f"auto: this CPU has {found[0]} but PyTorch has no bf16 {cell.upper()} kernel for it"
        )
    ratio = speedup()
    if ratio < MIN_SPEEDUP:
        return PrecisionChoice(
            "fp32", f"auto: bf16 ran {ratio:.2f}x fp32 speed on this CPU, under the {MIN_SPEEDUP}x auto needs"
        )
    return PrecisionChoice("bf16", f"auto: this CPU has {found[0]} and bf16 ran {ratio:.2f}x fp32 speed")


def read_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo is absent, e.g. macOS)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_kernel_runs(cell: str, device: torch.device) -> bool:
    """Whether one forward pass of the cell runs under bf16 autocast on the device."""
    from torch import nn

    layer = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](2, 2, batch_first=True).to(device)
    try:
        with autocast(device, "bf16"):
            layer(torch.zeros(1, 1, 2, device=device))
    except RuntimeError:
        return False
    return True


def measure_speedup(shape: ProbeShape, device: torch.device, rounds: int = 4) -> float:
    """bf16 / fp32 tokens per second of a forward + backward pass of the run's shapes (median of rounds)."""
    from torch import nn

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)  # the same probe inputs every time
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[shape.cell](
            shape.embed, shape.hidden, shape.layers, batch_first=True
        ).to(device)
        head = nn.Linear(shape.hidden, shape.vocab).to(device)
        inputs = torch.randn(shape.batch, shape.time, shape.embed, device=device)
        targets = torch.randint(0, shape.vocab, (shape.batch * shape.time,), device=device)

    def step_seconds(precision: str) -> float:
        started = time.perf_counter()
        with autocast(device, precision):
            out, _ = rnn(inputs)
            logits = head(out)
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, shape.vocab), targets)
        loss.backward()
        return time.perf_counter() - started

    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for precision in times:  # warm up: oneDNN builds its primitives on the first call
        step_seconds(precision)
    for _ in range(rounds):
        for precision, seconds in times.items():
            seconds.append(step_seconds(precision))
    fp32, bf16 = (sorted(seconds)[len(seconds) // 2] for seconds in times.values())
    return fp32 / bf16


@functools.cache
def auto_precision(device_type: str, shape: ProbeShape) -> PrecisionChoice:
    """What auto picks on this machine for these shapes: detected once per process, and a measured CPU
    decision kept in the user cache folder for later processes."""
    device = torch.device(device_type)
    cpu_flags = read_cpu_flags() if device_type == "cpu" else frozenset()
    key = probe_key(device_type, shape, cpu_flags)
    remembered = read_decision(key)
    if remembered is not None:
        return remembered
    probed: list[float] = []

    def speedup() -> float:
        probed.append(measure_speedup(shape, device))
        return probed[-1]

    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):  # the probes build layers: they must not move the run's seeds
        choice = decide(
            device_type,
            cuda_bf16=device_type == "cuda" and torch.cuda.is_bf16_supported(),
            cpu_flags=cpu_flags,
            kernel_runs=lambda: bf16_kernel_runs(shape.cell, device),
            speedup=speedup,
            cell=shape.cell,
        )
    if probed:  # only a measured decision is worth keeping: the others take no time
        write_decision(key, choice)
    return choice


def probe_key(device_type: str, shape: ProbeShape, cpu_flags: frozenset[str]) -> dict[str, object]:
    """What a speed probe's result depends on: the machine, torch, the threads and the run's shapes."""
    return {
        "device": device_type,
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpu_flags": hashlib.sha256(" ".join(sorted(cpu_flags)).encode()).hexdigest()[:16],
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "shape": asdict(shape),
    }


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor()
    found = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    return found[0] if found else platform.processor()


def _decision_file(key: dict[str, object]) -> Path:
    from charrnn.core.user_cache import cache_folder

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_folder("precision") / f"auto-{digest}.json"


def read_decision(key: dict[str, object]) -> PrecisionChoice | None:
    """A decision an earlier process measured for `key`, or None (absent, unreadable or for another key)."""
    try:
        saved = json.loads(_decision_file(key).read_text(encoding="utf-8"))
        if saved["key"] != key or saved["precision"] not in ("fp32", "bf16"):
            return None
        return PrecisionChoice(
            saved["precision"], f"{saved['reason']}; measured {saved['measured']}, kept in the cache"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_decision(key: dict[str, object], choice: PrecisionChoice) -> None:
    """Keep a measured decision for later processes; a cache folder that cannot be written is left alone."""
    path = _decision_file(key)
    record = {
        "key": key,
        "precision": choice.precision,
        "reason": choice.reason,
        "measured": time.strftime("%Y-%m-%d"),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.replace(temp, path)
    except OSError:
        pass


def resolve_precision(precision: str, device: torch.device, shape: ProbeShape) -> PrecisionChoice:
    """The precision to train in: the one asked for, or what auto picks."""
    if precision != "auto":
        return PrecisionChoice(precision, "asked for")
    return auto_precision(device.type, shape)


def trained_precision(training: Any) -> str:
    """How a run's config says it trains: "bf16 (auto)", "fp32 (auto)", or the precision asked for."""
    if training.precision == "auto":
        return f"{training.resolved_precision} (auto)" if training.resolved_precision else "auto"
    return training.precision
