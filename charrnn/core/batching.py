"""Whole examples in length-bucketed batches, and the training task over them (seq2seq pairs, labelled examples).

Each step is one padded batch of whole examples: nothing carries from one step to the next (unlike
the language model's streams), so the only state a resume needs is where in the epoch the run is.
The batch order of an epoch depends only on (seed, epoch):

    epoch e:  shuffle all examples          (generator seeded by seed, e)
              | pool 0 (50 batches) | pool 1 | ...      sort each pool by length: little padding
              cut the pools into batches, then shuffle the batch order

so a resumed run continues with exactly the batches an uninterrupted one would have had.
"""

from __future__ import annotations

import copy

import torch

from charrnn.core.distributed import DataParallelTask
from charrnn.core.state import TrainState


class LengthBatches:
    """Examples of the given lengths cut into batches of similar length, in a fresh order every epoch."""

    POOL_BATCHES = 50

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0, shuffle: bool = True) -> None:
        self.lengths, self.batch_size, self.seed, self.shuffle = lengths, batch_size, seed, shuffle
        self._epoch: int | None = None
        self._order: list[list[int]] = []

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def order(self, epoch: int) -> list[list[int]]:
        """The batches of `epoch`, as lists of example indices (without shuffling: shortest first)."""
        if self._epoch == epoch:
            return self._order
        n, key, size = len(self.lengths), self.lengths, self.batch_size
        if not self.shuffle:
            ordered = sorted(range(n), key=lambda i: key[i])
            batches = [ordered[i : i + size] for i in range(0, n, size)]
        else:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(n, generator=generator).tolist()
            pool = size * self.POOL_BATCHES
            batches = []
            for start in range(0, n, pool):
                chunk = sorted(perm[start : start + pool], key=lambda i: key[i])
                batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        self._epoch, self._order = epoch, batches
        return batches

    def resized(self, batch_size: int) -> LengthBatches:
        """The same examples in batches of `batch_size` (a global batch over several processes)."""
        other = copy.copy(self)
        other.batch_size, other._epoch, other._order = batch_size, None, []
        return other


class BatchedExamplesTask(DataParallelTask):
    """The part of a training task over `LengthBatches` that does not depend on the model.

    A subclass sets `model`, `batches`, `cfg` and `device` (then calls `_setup_forward`) and
    computes its loss on the rows `step_rows` gives. Under several processes each rank takes every
    N-th example of the global batch; a rank left without one (a last batch smaller than the world)
    computes the loss of one example and contributes it times zero, so every rank runs the backward pass.
    """

    batches: LengthBatches
    batches_per_epoch: int

    def _lay_out(self, global_batch: int) -> None:
        self.batches = self.batches.resized(global_batch)
        self.batches_per_epoch = len(self.batches)

    def step_rows(self, state: TrainState) -> tuple[list[int], bool]:
        """The example indices this rank computes for batch `state.chunk` of `state.epoch`, and whether they count."""
        rows = self.batches.order(state.epoch)[state.chunk]
        mine = rows[self.world.rank :: self.world.size]
        return (mine, True) if mine else (rows[:1], False)

    def start_epoch(self) -> None:
        pass

    def end_step(self, finite: bool) -> None:
        pass

    def carried_tensors(self) -> dict[str, torch.Tensor]:
        """Nothing, or (once several processes are involved) the global batch size the data position refers to."""
        if self.batches.batch_size == self.cfg.batch_size and not self.world.active:  # type: ignore[attr-defined]
            return {}
        return {"global_batch": torch.tensor([self.batches.batch_size])}

    def restore_carried(self, tensors: dict[str, torch.Tensor]) -> None:
        """Keep the saved run's global batches, whatever the number of processes now."""
        saved = int(tensors["global_batch"][0]) if "global_batch" in tensors else self.cfg.batch_size  # type: ignore[attr-defined]
        if saved != self.batches.batch_size:
            self._lay_out(saved)
