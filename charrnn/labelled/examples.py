"""Labelled examples as token ids, and the padded batches both labelled kinds train on.

Every example is its own sequence, so each starts from a fresh state: nothing carries from one
example to the next (unlike the language model's streams). A batch pads its examples on the right:

    classifier         ids      S m i t h <pad> <pad>      lengths 5     label English
                       the core reads ids packed by length, so padding never reaches a state
    conditional LM     inputs   <eos> S m i t h <pad>      (the `<eos>` before a text is its start)
                       targets  S m i t h <eos> <pad>      <pad> targets are ignored by the loss

Training reads the examples through the token cache (`charrnn.core.token_cache.cached_examples`):
the ids of all examples end to end in one memory-mapped file, where each starts, and its label, so a
second run on the same data and tokenizer does not tokenize again and a large set is not held in
memory as Python lists.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from charrnn.core.scoring import pad_sequences, teacher_inputs
from charrnn.core.special_tokens import EOS_ID
from charrnn.core.token_cache import ExampleFile, Note, cached_examples, data_fingerprint
from charrnn.core.tokenizers import Tokenizer
from charrnn.labelled.data import LabelledExamples

FINGERPRINT_EXAMPLES = 1 << 16  # examples hashed at a time


class PackedIds(Sequence[list[int]]):
    """The ids of many examples end to end (an array, or a memory map of the token cache) and where each
    starts: example i is tokens[offsets[i] : offsets[i + 1]], read as a list when a batch asks for it."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray) -> None:
        self.tokens, self.offsets = tokens, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> list[int]:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.tokens[self.offsets[index] : self.offsets[index + 1]].tolist()

    def lengths(self) -> list[int]:
        return np.diff(self.offsets).tolist()

    @classmethod
    def of(cls, ids: Sequence[list[int]]) -> PackedIds:
        """The ids of examples given as lists, packed."""
        if isinstance(ids, PackedIds):
            return ids
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(np.asarray([len(x) for x in ids], dtype=np.int64))
        tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(offsets[-1]))
        return cls(tokens, offsets)


@dataclass
class EncodedExamples:
    """Token ids of each example (without `<eos>`) and the index of its label.

    `ids` is a list of id lists, or the examples packed end to end (`PackedIds`, as the token cache holds them).
    """

    ids: Sequence[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> list[int]:
        if isinstance(self.ids, PackedIds):
            return self.ids.lengths()
        return [len(ids) for ids in self.ids]


def encode_examples(data: LabelledExamples, tokenizer: Tokenizer, labels: list[str]) -> EncodedExamples:
    """The ids of every example and its label's index in `labels` (the model's order), encoded in memory."""
    index = {label: i for i, label in enumerate(labels)}
    return EncodedExamples([tokenizer.encode_line(text) for text in data.texts], [index[x] for x in data.labels])


def cached_encode(
    data: LabelledExamples,
    tokenizer: Tokenizer,
    tokenizer_hash: str,
    labels: list[str],
    root: Path,
    note: Note | None = None,
) -> tuple[EncodedExamples, ExampleFile]:
    """What `encode_examples` gives, read through the token cache in `root` (written there when missing):
    the examples packed, their ids memory-mapped when large. Also returns the cache file."""
    index = {label: i for i, label in enumerate(labels)}
    found = cached_examples(
        data.texts, [index[x] for x in data.labels], labels, tokenizer, tokenizer_hash, root, data.origin, note
    )
    return EncodedExamples(PackedIds(found.ids(), found.offsets), found.labels.tolist()), found


def _marked(tokens: np.ndarray, offsets: np.ndarray, labels: np.ndarray, first: int, last: int) -> np.ndarray:
    """Examples first..last-1 as the stream the fingerprint hashes: each one's ids, then -1, its label, -2."""
    start, stop = int(offsets[first]), int(offsets[last])
    lengths = np.diff(offsets[first : last + 1]).astype(np.int64)
    marks = np.cumsum(lengths + 3) - 3  # where each example's -1 goes
    out = np.empty(stop - start + 3 * (last - first), dtype=np.int32)
    is_id = np.ones(len(out), dtype=bool)
    for shift in range(3):
        is_id[marks + shift] = False
    out[is_id] = tokens[start:stop]
    out[marks] = -1
    out[marks + 1] = labels[first:last]
    out[marks + 2] = -2
    return out


def _fingerprint_pieces(part: EncodedExamples) -> Iterator[np.ndarray]:
    packed = PackedIds.of(part.ids)
    labels = np.asarray(part.labels, dtype=np.int64).reshape(-1)
    for first in range(0, len(packed), FINGERPRINT_EXAMPLES):
        yield _marked(packed.tokens, packed.offsets, labels, first, min(first + FINGERPRINT_EXAMPLES, len(packed)))
    yield np.asarray([-3], dtype=np.int64)


def examples_fingerprint(*parts: EncodedExamples) -> str:
    """A short hash of encoded examples and their labels, to check that a resumed run reads the same data.

    The sha256 of, per part, every example's ids followed by -1, its label, -2, and -3 after the part (as int32).
    """
    return data_fingerprint(piece for part in parts for piece in _fingerprint_pieces(part))


def classifier_batch(
    examples: EncodedExamples, rows: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids (batch, longest) right-padded, lengths (batch,), labels (batch,)) of the examples `rows`."""
    ids = pad_sequences([examples.ids[i] for i in rows])
    lengths = torch.tensor([len(examples.ids[i]) for i in rows], dtype=torch.long)
    return ids, lengths, torch.tensor([examples.labels[i] for i in rows], dtype=torch.long)


def language_model_batch(
    examples: EncodedExamples, rows: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets (batch, longest + 1), labels (batch,)): `<eos>` + text predicts text + `<eos>`."""
    targets = pad_sequences([examples.ids[i] + [EOS_ID] for i in rows])
    return teacher_inputs(targets), targets, torch.tensor([examples.labels[i] for i in rows], dtype=torch.long)
