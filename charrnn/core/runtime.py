"""Devices, threads and seeds: the process-level settings a run asks for."""

from __future__ import annotations

import contextlib
import random

import torch

from charrnn.core import openmp
from charrnn.core.errors import CharRNNError


def resolve_device(name: str) -> torch.device:
    """Turn `auto|cpu|cuda|mps` into a torch device, refusing one that is absent."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CharRNNError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CharRNNError(
            "--device mps was asked for but Apple's MPS is not available; use --device cpu or auto."
        )
    if name not in ("cpu", "cuda", "mps"):
        raise CharRNNError(f"Unknown --device {name!r}; choose auto, cpu, cuda or mps.")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Use `threads` CPU threads (default: the cores not busy with other work when charrnn started, at most 8)."""
    if threads is None:
        threads = openmp.default_threads(openmp.usable_cores(), openmp.busy_at_start())
    torch.set_num_threads(max(int(threads), 1))


GENERATION_THREADS = 1  # sampling, scoring, translating: small matrices, so more threads mostly wait
# Decoding this many rows at once (sentences x beams) makes matrices large enough for every free
# core to pay (bench/README.md, "Beam search, one sentence at a time against batched").
MANY_ROWS = 8


def set_inference_threads(threads: int | None, rows: int = 1) -> None:
    """Use `threads` CPU threads for sampling, scoring or translating.

    The default depends on `rows`, the decoder rows one step computes: `GENERATION_THREADS` for a
    few, the training default (the free cores) from `MANY_ROWS` on.
    """
    if threads is not None and not 1 <= threads <= 1024:
        raise CharRNNError(f"--threads must be between 1 and 1024, got {threads}.")
    if threads is None and rows >= MANY_ROWS:
        set_threads(None)
        return
    torch.set_num_threads(GENERATION_THREADS if threads is None else threads)


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators (and numpy's, when it is installed)."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for the forward pass: a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def check_autocast(device: torch.device, precision: str, cell: str) -> None:
    """Refuse a precision the device's kernels cannot run for this cell, with one line, before training starts.

    oneDNN runs the CPU LSTM in bfloat16 only on CPUs with bf16 instructions (avx512_bf16 or AMX);
    elsewhere the first forward pass fails deep inside torch. A one-step probe finds out.
    """
    if precision in ("fp32", "auto") or device.type != "cpu":
        return
    from torch import nn

    layer = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](2, 2, batch_first=True)
    try:
        with autocast(device, precision):
            layer(torch.zeros(1, 1, 2))
    except RuntimeError:
        raise CharRNNError(
            f"--precision {precision} is not supported for the {cell.upper()} cell on this CPU (its PyTorch kernels "
            "need bf16 instructions such as avx512_bf16 or AMX); use --precision fp32."
        ) from None


def scoring_autocast(device: torch.device, precision: str, cell: str) -> contextlib.AbstractContextManager:
    """Autocast for scoring or evaluating: fp32 (exact, the default) or bf16 on request."""
    if precision not in ("fp32", "bf16"):
        raise CharRNNError(f"Unknown precision {precision!r} for scoring; choose fp32 or bf16.")
    check_autocast(device, precision, cell)
    return autocast(device, precision)
