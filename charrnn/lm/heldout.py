"""Which tokens of a corpus train and which validate, as views over one memory-mapped id array.

Rule "blocks" (the default): cut the token stream into blocks of B tokens and hold out the last
block of every group of k = round(1 / --val-fraction) blocks (k = 10 for the default 0.1):

    | train | train | ... | train |  VAL  | train | train | ... | train |  VAL  | ... tail
    '-------------- group 0: k blocks ----------'------------ group 1 ------------'

so validation samples the whole text (a Project Gutenberg book is not judged on its licence).
B = max(8 x --bptt, tokens / (100 k)): at most about 100 groups, each block long enough for the
model to warm its state up; on a small corpus B shrinks so that there are at least two groups.
A tail shorter than a group gives up to k - 1 blocks to training and the rest to validation.

Rule "tail" (runs made before charrnn 0.3, whose config.json has no `val_split`): the last
--val-fraction of the stream validates. With --val FILE the whole corpus trains.

A `TokenView` lists the segments of the id array that make up one part, so batches read slices
of the memory map without copying the corpus.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from charrnn.core.errors import CharRNNError

VAL_SPLITS = ("blocks", "tail")
MAX_GROUPS = 100
MIN_BLOCK_CHUNKS = 8


@dataclass
class TokenView:
    """Part of an id array: segments `ids[starts[i] : starts[i] + lengths[i]]`, read as one stream."""

    ids: np.ndarray  # 1-D ids, any unsigned dtype (usually a read-only memmap)
    starts: np.ndarray  # (segments,) int64 offsets into `ids`
    offsets: np.ndarray  # (segments + 1,) int64: segment i holds view positions [offsets[i], offsets[i+1])

    @classmethod
    def of(cls, ids: np.ndarray, segments: list[tuple[int, int]] | None = None) -> TokenView:
        """A view of `segments` (start, length) of `ids`; by default the whole array."""
        segments = [(0, len(ids))] if segments is None else [s for s in segments if s[1] > 0]
        starts = np.array([s for s, _ in segments], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum([n for _, n in segments], dtype=np.int64)]).astype(np.int64)
        return cls(ids, starts, offsets)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def contiguous(self) -> bool:
        """Whether the view is one slice of `ids`."""
        return len(self.starts) <= 1

    def read(self, start: int, stop: int) -> np.ndarray:
        """View positions [start, stop) as a new int64 array (only those pages of the map are read)."""
        if self.contiguous:
            base = int(self.starts[0]) if len(self.starts) else 0
            return np.asarray(self.ids[base + start : base + stop], dtype=np.int64)
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pieces = []
        segment = first
        while start < stop:
            end = min(stop, int(self.offsets[segment + 1]))
            at = int(self.starts[segment]) + start - int(self.offsets[segment])
            pieces.append(np.asarray(self.ids[at : at + end - start], dtype=np.int64))
            start, segment = end, segment + 1
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)

    def pieces(self, size: int = 1 << 22) -> Iterator[np.ndarray]:
        """The view's ids in order, `size` at a time (for hashing a long stream in bounded memory)."""
        for start in range(0, len(self), size):
            yield self.read(start, min(start + size, len(self)))


def block_size(n_tokens: int, every: int, bptt: int) -> int:
    """B of the "blocks" rule (see the module docstring)."""
    block = max(MIN_BLOCK_CHUNKS * bptt, -(-n_tokens // (every * MAX_GROUPS)))
    if n_tokens < 2 * every * block:
        block = max(1, n_tokens // (2 * every))
    return block


def split_blocks(ids: np.ndarray, val_fraction: float, bptt: int) -> tuple[TokenView, TokenView, int]:
    """(train, validation, B) under the "blocks" rule."""
    n = len(ids)
    every = max(2, round(1 / val_fraction))
    block = block_size(n, every, bptt)
    group = every * block
    train, val = [], []
    for start in range(0, n - n % group, group):
        train.append((start, (every - 1) * block))
        val.append((start + (every - 1) * block, block))
    tail_start = n - n % group
    tail = n - tail_start
    kept = min(tail, (every - 1) * block)
    train.append((tail_start, kept))
    val.append((tail_start + kept, tail - kept))
    train_view, val_view = TokenView.of(ids, train), TokenView.of(ids, val)
    if len(train_view) < 2 or len(val_view) < 2:
        raise CharRNNError(f"The corpus has only {n} tokens, too few to split off a validation part.")
    return train_view, val_view, block


def split_tail(ids: np.ndarray, val_fraction: float) -> tuple[TokenView, TokenView]:
    """(train, validation) under the "tail" rule: the last `val_fraction` of the stream validates."""
    n = len(ids)
    n_val = max(int(n * val_fraction), 2)
    if n - n_val < 2:
        raise CharRNNError(f"The corpus has only {n} tokens, too few to split off a validation part.")
    return TokenView.of(ids, [(0, n - n_val)]), TokenView.of(ids, [(n - n_val, n_val)])
