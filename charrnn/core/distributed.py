"""Data-parallel training on torch.distributed: one process per core or GPU, launched by torchrun.

    torchrun --nproc-per-node 2 -m charrnn train corpus.txt ...      (or: charrnn train --nproc 2 ...)

    rank 0: streams [0, B)    rank 1: streams [B, 2B)     the truncated-BPTT layout has N x B rows
       |  forward/backward on its rows  |                 (global batch = N x --batch-size)
       '------ DistributedDataParallel all-reduces (averages) the gradients ------'
                 every rank takes the same optimiser step with the same weights

Rank 0 alone writes the run directory (checkpoints, metrics, best weights) and reports progress;
its writes are atomic, so a rank lost mid-run never leaves a half-written checkpoint. Decisions that
must agree (skip a non-finite step, stop) are all-reduced. Carried state is saved for all N x B
streams, so a run resumes on any number of processes that divides the global batch. gloo on CPU,
NCCL on CUDA; torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR) says the rest.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from charrnn.core.errors import CharRNNError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


class DataParallelTask:
    """What a training task needs to run as one of several processes (mixed into both models' tasks).

    The task keeps `model`, `cfg` and `device` and defines `_lay_out(global_batch)`, which takes this
    process's share of a global batch of `world.size` x --batch-size.
    """

    model: torch.nn.Module
    cfg: object
    device: torch.device

    def _setup_forward(self) -> None:
        """The forward pass: the model itself, or torch.compile'd; one process until `distribute`."""
        self.forward = torch.compile(self.model) if self.cfg.compile else self.model  # type: ignore[attr-defined]
        self.world = World()

    def distribute(self, world: World) -> None:
        """Train as one of `world.size` processes: lay the global batch out, all-reduce gradients (DDP)."""
        self.world = world
        self._lay_out(world.size * self.cfg.batch_size)  # type: ignore[attr-defined]
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.forward = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)


def _environment_number(name: str, default: str | None = None) -> int:
    """A whole number torchrun puts in the environment (RANK, WORLD_SIZE, LOCAL_RANK), with one-line errors."""
    value = os.environ.get(name, default)
    if value is None:
        raise CharRNNError(
            f"WORLD_SIZE is {os.environ.get('WORLD_SIZE')} but {name} is not set; start distributed training "
            "with torchrun or `charrnn train --nproc N`, or unset WORLD_SIZE."
        )
    try:
        number = int(value)
    except ValueError:
        raise CharRNNError(
            f"{name} must be a whole number (torchrun sets it), got {value!r}; unset it to train in one process."
        ) from None
    if number < 0:
        raise CharRNNError(f"{name} must be 0 or more, got {number}.")
    return number


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher setting WORLD_SIZE) with several ranks."""
    return _environment_number("WORLD_SIZE", "1") > 1


def join(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA); this process's device."""
    if not launched():
        return World(), device
    size = _environment_number("WORLD_SIZE")
    world = World(_environment_number("RANK"), size, _environment_number("LOCAL_RANK", "0"))
    if world.rank >= size:
        raise CharRNNError(f"RANK {world.rank} is not below WORLD_SIZE {size}; start the processes with torchrun.")
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise CharRNNError(f"Distributed training runs on CPU (gloo) or CUDA (NCCL), not {device.type}.")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, device


def is_lost_peer(exc: BaseException) -> bool:
    """Whether `exc` is a collective failing because another training process stopped or died."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        word in text for word in ("gloo", "Gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe")
    )


def lost_peer_error(world: World, exc: BaseException, run_dir: object) -> CharRNNError:
    """The one line a surviving process prints when another one died."""
    return CharRNNError(
        f"training process {world.rank} of {world.size} lost the others: another process stopped or died "
        f"({type(exc).__name__}). The last checkpoint is intact; continue with: charrnn train --resume {run_dir}"
    )


def leave(world: World) -> None:
    """Leave the process group (after the last collective)."""
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def main_first(world: World) -> Iterator[None]:
    """Run the block on each machine's first process (e.g. building the token cache), then on the others."""
    first = world.local_rank == 0
    if world.active and not first:
        dist.barrier()
    yield
    if world.active and first:
        dist.barrier()


def any_of(world: World, *flags: bool) -> tuple[bool, ...]:
    """Each flag OR-ed over the ranks, in one all-reduce (so that every rank stops at the same step)."""
    if not world.active:
        return flags
    values = torch.tensor([float(f) for f in flags], device=_collective_device())
    dist.all_reduce(values)
    return tuple(bool(v > 0) for v in values.tolist())


def agree_on_loss(world: World, loss: torch.Tensor) -> tuple[bool, float]:
    """(whether the loss is finite on every rank, its mean over the ranks), in one all-reduce."""
    value = float(loss.detach())
    finite = math.isfinite(value)
    if not world.active:
        return finite, value
    both = torch.tensor([value if finite else 0.0, 0.0 if finite else 1.0], device=_collective_device())
    dist.all_reduce(both)
    total, bad = both.tolist()
    return bad == 0, total / world.size


def gather_rows(world: World, tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """Every rank's `tensor` joined along `dim` in rank order (each rank's rows of the global streams)."""
    if not world.active:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world.size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=dim)


def my_rows(world: World, rows: int) -> range:
    """This rank's share of `rows` global streams; `rows` must divide evenly."""
    if rows % world.size:
        raise CharRNNError(
            f"The run has {rows} parallel streams, which {world.size} processes cannot share evenly; "
            f"use a number of processes that divides {rows}."
        )
    share = rows // world.size
    return range(world.rank * share, (world.rank + 1) * share)


def _collective_device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    )


def pop_nproc(args: list[str]) -> tuple[list[str], int | None]:
    """`args` without `--nproc N` / `--nproc=N`, and N (None when absent)."""
    rest, nproc = [], None
    items = iter(args)
    for arg in items:
        if arg == "--nproc" or arg.startswith("--nproc="):
            value = arg.split("=", 1)[1] if "=" in arg else next(items, "")
            try:
                nproc = int(value)
            except ValueError:
                raise CharRNNError(f"--nproc must be a whole number of processes, got {value!r}.") from None
            if not 1 <= nproc <= 1024:
                raise CharRNNError(f"--nproc must be between 1 and 1024, got {nproc}.")
        else:
            rest.append(arg)
    return rest, nproc


def launch(nproc: int, args: list[str]) -> int:
    """Run `charrnn ARGS` in `nproc` processes on this machine under torchrun (in this process); 0 when all succeed.

    The processes print their own one-line errors; a failure ends in one more line, not torchrun's traceback.
    """
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        torchrun.main(["--standalone", f"--nproc-per-node={nproc}", "-m", "charrnn", *args])
    except ChildFailedError as exc:
        codes = [failure.exitcode for failure in exc.failures.values()]
        code = next((c for c in codes if c > 0), 1)
        killed = [
            f"process {rank} was killed by {failure.signal_name()}"
            for rank, failure in sorted(exc.failures.items())
            if failure.exitcode < 0
        ]
        raise CharRNNError(
            f"training in {nproc} processes failed ({'; '.join(killed) + '; ' if killed else ''}"
            "the first error is above).",
            code,
        ) from None
    return 0
