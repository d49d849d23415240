"""Two long-range tasks that separate the cells: the adding problem and the copy task, made up fresh each step.

The adding problem (Hochreiter & Schmidhuber 1997, experiment 4; the two-halves variant of Le et al.
2015 and Arjovsky et al. 2016). A sequence of T pairs (X_j, m_j): X_j uniform in [−1, 1], the marker
m_j = 1 at one position of the first half and one of the second half, 0 elsewhere. After the last
pair the model predicts

    y = 0.5 + (X_a + X_b) / 4   (in [0, 1]),   a, b the marked positions,

trained on the squared error. A sequence counts as solved when |prediction − y| < 0.04. A model with
no memory can only predict E[y] = 0.5: its mean squared error is E[((X_a + X_b)/4)²] = (2 · 1/3)/16 =
1/24 ≈ 0.0417 (and it solves P(|X_a + X_b| < 0.16) ≈ 15% of sequences by luck).

The copy task (Arjovsky, Shah & Bengio 2016). The input is 10 symbols drawn uniformly from 8, then
T − 1 blanks, a delimiter and 10 more blanks (T + 20 steps); the target is T + 10 blanks and then the
10 symbols. The loss is the cross-entropy per step over all T + 20 steps. A model with no memory
outputs blanks where they are certain and guesses uniformly among the 8 symbols in the last 10
steps:

    baseline = 10 · log 8 / (T + 20) nats per step.

A sequence counts as solved when all 10 recalled symbols are the model's most probable ones.

Each training step draws its batch from a generator seeded with (--seed, step), so a resumed run
sees exactly the sequences an uninterrupted one would; the held-out sequences come from a generator
of their own, the same at every evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ADDING_TOLERANCE = 0.04  # |error| below this: the sequence is solved (Hochreiter & Schmidhuber 1997)
SOLVED_SHARE = 0.95  # a run has solved its task when this share of the held-out sequences is solved
COPIED, ALPHABET = 10, 8  # the copy task's 10 symbols, drawn from 8
BLANK, DELIMITER, FIRST_SYMBOL = 1, 2, 3  # input ids (0 is <pad>, whose embedding stays zero)
VALIDATION_STREAM = 2**62  # added to the seed for the held-out sequences' generator


@dataclass
class Batch:
    """Sequences of one task: input ids, an extra input value per step (adding), and targets."""

    ids: torch.Tensor  # (batch, steps) long
    values: torch.Tensor | None  # (batch, steps, 1): the adding problem's X_j; None for the copy task
    targets: torch.Tensor  # adding: (batch,) float y; copy: (batch, steps) long ids

    def to(self, device: torch.device) -> Batch:
        values = None if self.values is None else self.values.to(device)
        return Batch(self.ids.to(device), values, self.targets.to(device))

    def rows(self, start: int, stop: int) -> Batch:
        values = None if self.values is None else self.values[start:stop]
        return Batch(self.ids[start:stop], values, self.targets[start:stop])


class AddingProblem:
    """The adding problem (see the module docstring): read-out of the last step, squared error."""

    name = "adding"
    title = "adding problem"
    vocab = 3  # <pad>, unmarked (1), marked (2)
    extra_input = 1  # X_j beside the marker's embedding
    outputs = 1

    @staticmethod
    def steps(length: int) -> int:
        return length

    @staticmethod
    def baseline(length: int) -> float:
        """The no-memory mean squared error, 1/24 whatever T."""
        return 1.0 / 24.0

    @staticmethod
    def batch(generator: torch.Generator, size: int, length: int) -> Batch:
        values = torch.rand(size, length, generator=generator) * 2 - 1
        half = length // 2
        first = torch.randint(0, half, (size,), generator=generator)
        second = torch.randint(half, length, (size,), generator=generator)
        markers = torch.zeros(size, length, dtype=torch.long)
        rows = torch.arange(size)
        markers[rows, first] = 1
        markers[rows, second] = 1
        targets = 0.5 + (values[rows, first] + values[rows, second]) / 4
        return Batch(markers + 1, values.unsqueeze(-1), targets)

    @staticmethod
    def predictions(outputs: torch.Tensor) -> torch.Tensor:
        """The prediction ŷ from the read-out of every step, (batch, steps, 1) -> (batch,): the last step's."""
        return outputs[:, -1, 0]

    @staticmethod
    def loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean squared error (ŷ − y)²."""
        return F.mse_loss(predictions.float(), targets)

    @staticmethod
    def solved(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Which sequences are solved: |ŷ − y| < 0.04, (batch,) bool."""
        return (predictions.float() - targets).abs() < ADDING_TOLERANCE


class CopyTask:
    """The copy task (see the module docstring): a class at every step, cross-entropy per step."""

    name = "copy"
    title = "copy task"
    vocab = FIRST_SYMBOL + ALPHABET  # <pad>, blank, delimiter, 8 symbols
    extra_input = 0
    outputs = vocab

    @staticmethod
    def steps(length: int) -> int:
        return length + 2 * COPIED

    @staticmethod
    def baseline(length: int) -> float:
        """The no-memory cross-entropy per step, 10 · log 8 / (T + 20)."""
        return COPIED * math.log(ALPHABET) / (length + 2 * COPIED)

    @staticmethod
    def batch(generator: torch.Generator, size: int, length: int) -> Batch:
        symbols = torch.randint(FIRST_SYMBOL, FIRST_SYMBOL + ALPHABET, (size, COPIED), generator=generator)
        steps = length + 2 * COPIED
        ids = torch.full((size, steps), BLANK, dtype=torch.long)
        ids[:, :COPIED] = symbols
        ids[:, COPIED + length - 1] = DELIMITER  # after T − 1 blanks; 10 blanks follow
        targets = torch.full((size, steps), BLANK, dtype=torch.long)
        targets[:, -COPIED:] = symbols
        return Batch(ids, None, targets)

    @staticmethod
    def predictions(outputs: torch.Tensor) -> torch.Tensor:
        """The logits at every step, (batch, steps, classes)."""
        return outputs

    @staticmethod
    def loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy per step, over all T + 20 steps."""
        return F.cross_entropy(predictions.float().flatten(0, 1), targets.flatten())

    @staticmethod
    def solved(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Which sequences are solved: all 10 recalled symbols are the most probable class, (batch,) bool."""
        recalled = predictions[:, -COPIED:].argmax(dim=-1)
        return (recalled == targets[:, -COPIED:]).all(dim=-1)


PROBLEMS = {problem.name: problem for problem in (AddingProblem, CopyTask)}


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator training step `step` draws its batch from: the same for a resumed run."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % 2**63)


def validation_generator(seed: int) -> torch.Generator:
    """The generator of the held-out sequences (apart from every training step's)."""
    return torch.Generator().manual_seed((seed + VALIDATION_STREAM) % 2**63)
