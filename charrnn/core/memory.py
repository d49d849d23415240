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
from typing import TypeVar

import torch

from charrnn.core.errors import CharRNNError

LOAD_BYTES_PER_PARAMETER = 12
TRAIN_BYTES_PER_PARAMETER = 32

M = TypeVar("M", bound=torch.nn.Module)


def available_bytes() -> int | None:
    """Memory this process can still get now, or None when unknown: the least of the system's free memory
    (MemAvailable on Linux), the room left under the address-space limit (RLIMIT_AS, as `ulimit -v` or
    `prlimit --as` set it) and the room left in the process's cgroup (a container's memory limit)."""
    known = [n for n in (_system_available(), _address_space_room(), _cgroup_room()) if n is not None]
    return max(min(known), 0) if known else None


def _system_available() -> int | None:
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


def _address_space_room() -> int | None:
    """RLIMIT_AS minus the address space in use (None without a limit)."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm", encoding="ascii") as handle:
            used = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        return limit - used
    except (ImportError, OSError, ValueError, IndexError):
        return None


def _cgroup_room() -> int | None:
    """The memory limit of this process's cgroup minus its usage (v2, else v1; None without a limit)."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":  # cgroup v2
            files = ("memory.max", "memory.current")
        elif "memory" in parts[1].split(","):  # cgroup v1
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        root = "/sys/fs/cgroup" if files[0] == "memory.max" else "/sys/fs/cgroup/memory"
        for folder in (root + parts[2], root):  # the process's own group, or the mount's root in a container
            try:
                with open(f"{folder}/{files[0]}", encoding="ascii") as handle:
                    limit_text = handle.read().strip()
                with open(f"{folder}/{files[1]}", encoding="ascii") as handle:
                    used = int(handle.read().strip())
            except (OSError, ValueError):
                continue
            if limit_text == "max" or not limit_text.isdigit() or int(limit_text) >= 1 << 60:
                return None
            return int(limit_text) - used
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


def build_to_train(build: Callable[[], M], activations: int = 0) -> M:
    """The model `build` makes, once `check_model_fits` finds the memory to train it (`activations`: the
    bytes kept for the backward pass, beyond the parameters')."""
    check_model_fits(build, TRAIN_BYTES_PER_PARAMETER, activations, "train")
    return build()


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
