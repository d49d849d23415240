"""Labelled examples as token ids, and the padded batches both labelled kinds train on.

Every example is its own sequence, so each starts from a fresh state: nothing carries from one
example to the next (unlike the language model's streams). A batch pads its examples on the right:

    classifier         ids      S m i t h <pad> <pad>      lengths 5     label English
                       the core reads ids packed by length, so padding never reaches a state
    conditional LM     inputs   <eos> S m i t h <pad>      (the `<eos>` before a text is its start)
                       targets  S m i t h <eos> <pad>      <pad> targets are ignored by the loss
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from charrnn.core.scoring import pad_sequences, teacher_inputs
from charrnn.core.special_tokens import EOS_ID
from charrnn.core.token_cache import data_fingerprint
from charrnn.core.tokenizers import Tokenizer
from charrnn.labelled.data import LabelledExamples


@dataclass
class EncodedExamples:
    """Token ids of each example (without `<eos>`) and the index of its label."""

    ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.ids]


def encode_examples(data: LabelledExamples, tokenizer: Tokenizer, labels: list[str]) -> EncodedExamples:
    """The ids of every example and its label's index in `labels` (the model's order)."""
    index = {label: i for i, label in enumerate(labels)}
    return EncodedExamples([tokenizer.encode_line(text) for text in data.texts], [index[x] for x in data.labels])


def examples_fingerprint(*parts: EncodedExamples) -> str:
    """A short hash of encoded examples and their labels, to check that a resumed run reads the same data."""
    pieces = []
    for part in parts:
        for ids, label in zip(part.ids, part.labels, strict=True):
            pieces.append(np.asarray([*ids, -1, label, -2], dtype=np.int64))
        pieces.append(np.asarray([-3], dtype=np.int64))
    return data_fingerprint(pieces)


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
