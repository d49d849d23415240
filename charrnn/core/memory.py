"""Bounding model size before anything is allocated: count parameters on the meta device, compare with RAM.

A model is first built on PyTorch's "meta" device, which records shapes but allocates nothing, so
even a config.json asking for billions of parameters costs microseconds. The estimate is

    bytes = parameters x bytes_per_parameter + extra

with bytes_per_parameter about 12 to load a run (the weights read, the model, the file's bytes) and
about 32 to train one (weights, gradients, two Adam moments, the checkpoint's copies), and `extra` for
activations. A model that needs more than the machine's available memory is refused in one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from charrnn.core.errors import CharRNNError

LOAD_BYTES_PER_PARAMETER = 12
TRAIN_BYTES_PER_PARAMETER = 32


def available_bytes() -> int | None:
    """Memory the system can give this process now (MemAvailable on Linux), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def model_shapes(build: Callable[[], torch.nn.Module]) -> dict[str, tuple[int, ...]]:
    """The name -> shape of every tensor in the state dict of the model `build` makes, allocating nothing."""
    with torch.device("meta"):
        model = build()
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_model_fits(
    build: Callable[[], torch.nn.Module], bytes_per_parameter: int, extra: int = 0, what: str = "load"
) -> dict[str, tuple[int, ...]]:
    """Refuse a model whose estimated memory exceeds what is available; returns its tensor shapes."""
    shapes = model_shapes(build)
    parameters = sum(_numel(shape) for shape in shapes.values())
    needed = parameters * bytes_per_parameter + extra
    free = available_bytes()
    if free is not None and needed > free:
        raise CharRNNError(
            f"This model has {parameters:,} parameters; to {what} it needs about {gib(needed)} of memory but "
            f"{gib(free)} is available; use a smaller --hidden/--embed/--layers (or --batch-size/--bptt)."
        )
    return shapes


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
