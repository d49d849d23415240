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
        if self.num < 1:
            raise CharRNNError(f"--num must be at least 1, got {self.num}.")
        if self.top_k is not None and self.top_k < 1:
            raise CharRNNError(f"--top-k must be at least 1, got {self.top_k}.")
        if self.top_p is not None and not (0.0 < self.top_p <= 1.0):
            raise CharRNNError(f"--top-p must be in (0, 1], got {self.top_p}.")


def never_emitted(log_probs: torch.Tensor) -> torch.Tensor:
    """A copy of (batch, vocab) scores with `<unk>` and `<pad>` set to -inf: tokens no decoder may emit."""
    masked = log_probs.clone()
    masked[:, UNK_ID] = -math.inf
    masked[:, PAD_ID] = -math.inf
    return masked


def next_token_distribution(log_probs: torch.Tensor, settings: SampleSettings) -> torch.Tensor:
    """Probabilities to draw from, (batch, vocab): `<unk>`/`<pad>` removed, temperature, top-k, top-p."""
    scores = never_emitted(log_probs.float() / settings.temperature)
    if settings.top_k is not None and settings.top_k < scores.shape[-1]:
        kth = torch.topk(scores, settings.top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    probs = torch.softmax(scores, dim=-1)
    if settings.top_p is not None and settings.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass strictly above each token
        sorted_probs = sorted_probs.masked_fill(before >= settings.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def choose_tokens(
    log_probs: torch.Tensor, settings: SampleSettings, generator: torch.Generator | None
) -> torch.Tensor:
    """One token id per row, (batch,)."""
    if settings.greedy:
        return never_emitted(log_probs).argmax(dim=-1)
    probs = next_token_distribution(log_probs, settings)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
