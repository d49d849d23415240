"""Choosing the next token from a model's log-probabilities: temperature, greedy, top-k, top-p, `<unk>` removed.

Used by the language model's sampler and by seq2seq decoding.

`<unk>` is never emitted. Drawing from p and redrawing whenever `<unk>` comes up yields
token v with probability p(v) / (1 - p(<unk>)): exactly the distribution with `<unk>`'s
probability set to zero and the rest renormalised. The sampler does that in one draw by
masking `<unk>` (and `<pad>`) before the softmax, which is the same distribution at a
fixed cost even when the model puts almost all its mass on `<unk>`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.special_tokens import PAD_ID, UNK_ID

MAX_NUM = 10_000  # samples drawn together: each holds its state and a (vocabulary) row of scores


@dataclass
class SampleSettings:
    """How to draw tokens."""

    length: int = 500
    temperature: float = 1.0
    greedy: bool = False
    top_k: int | None = None
    top_p: float | None = None
    until_eos: bool = False
    num: int = 1
    seed: int | None = None

    def validate(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise CharRNNError(f"--temperature must be a finite number > 0, got {self.temperature}.")
        if self.length < 0:
            raise CharRNNError(f"--length must be 0 or more, got {self.length}.")
        if not 1 <= self.num <= MAX_NUM:
            raise CharRNNError(
                f"--num must be between 1 and {MAX_NUM:,} (samples drawn together in one batch), got {self.num}; "
                "run the command again for more."
            )
        if self.top_k is not None and self.top_k < 1:
            raise CharRNNError(f"--top-k must be at least 1, got {self.top_k}.")
        if self.top_p is not None and not (0.0 < self.top_p <= 1.0):
            raise CharRNNError(f"--top-p must be in (0, 1], got {self.top_p}.")
        if self.seed is not None and not 0 <= self.seed < 2**63:  # torch's generators take 64-bit seeds
            raise CharRNNError(f"--seed must be between 0 and 2**63 - 1, got {self.seed}.")


def check_rows_fit(rows: int, vocab: int, what: str) -> None:
    """Refuse decoding `rows` rows at once when their (rows, vocabulary) scores need more than half the free memory."""
    from charrnn.core.memory import available_bytes, gib

    needed = rows * max(vocab, 1) * BYTES_PER_ROW_ENTRY
    free = available_bytes()
    if free is not None and needed > free // 2:
        raise CharRNNError(
            f"{what} asks for {rows:,} rows decoded at once, which need about {gib(needed)} of memory with a "
            f"vocabulary of {vocab:,}, but {gib(free)} is available; lower it."
        )


BYTES_PER_ROW_ENTRY = 24  # per decoded row and vocabulary entry: scores, probabilities and sorting copies


NOT_FINITE = (
    "The model's output is not finite (NaN or infinite scores): its weights hold values too large to compute "
    "with, so they are damaged or were not trained by charrnn; restore them from a backup or retrain."
)


def check_finite_output(log_probs: torch.Tensor) -> None:
    """Refuse log-probabilities holding NaN or +inf (finite weights near 3e38 overflow to them)."""
    if bool(torch.isnan(log_probs).any()) or bool(torch.isposinf(log_probs).any()):
        raise CharRNNError(NOT_FINITE)


def never_emitted(log_probs: torch.Tensor) -> torch.Tensor:
    """A copy of (batch, vocab) scores with `<unk>` and `<pad>` set to -inf: tokens no decoder may emit."""
    masked = log_probs.clone()
    masked[:, UNK_ID] = -math.inf
    masked[:, PAD_ID] = -math.inf
    return masked


def next_token_distribution(log_probs: torch.Tensor, settings: SampleSettings) -> torch.Tensor:
    """Probabilities to draw from, (batch, vocab): `<unk>`/`<pad>` removed, temperature, top-k, top-p.

    The scores are shifted so that the best is 0 before they are divided by the temperature, itself at
    least float32's smallest normal number: a tiny temperature (1e-300) then sends the others to -inf
    instead of every score to +-inf or 0/0 (NaN).
    """
    scores = never_emitted(log_probs.float())
    temperature = max(settings.temperature, torch.finfo(torch.float32).tiny)
    scores = (scores - scores.max(dim=-1, keepdim=True).values) / temperature
    if settings.top_k is not None and settings.top_k < scores.shape[-1]:
        kth = torch.topk(scores, settings.top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    probs = torch.softmax(scores, dim=-1)
    if settings.top_p is not None and settings.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass strictly above each token
        drop = before >= settings.top_p
        drop[:, 0] = False  # the most probable token always stays (a top-p of 5e-324 is 0 in float32)
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def choose_tokens(
    log_probs: torch.Tensor, settings: SampleSettings, generator: torch.Generator | None
) -> torch.Tensor:
    """One token id per row, (batch,)."""
    check_finite_output(log_probs)
    if settings.greedy:
        return never_emitted(log_probs).argmax(dim=-1)
    probs = next_token_distribution(log_probs, settings)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
