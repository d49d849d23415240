"""Generating text from a language model: temperature, greedy, top-k and top-p sampling.

`<unk>` is never emitted. Drawing from p and redrawing whenever `<unk>` comes up yields
token v with probability p(v) / (1 - p(<unk>)): exactly the distribution with `<unk>`'s
probability set to zero and the rest renormalised. The sampler does that in one draw by
masking `<unk>` (and `<pad>`) before the softmax, which is the same distribution at a
fixed cost even when the model puts almost all its mass on `<unk>`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from charrnn.errors import CharRNNError
from charrnn.model import LanguageModel
from charrnn.tokenizers import EOS_ID, PAD_ID, UNK_ID, Tokenizer


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


def next_token_distribution(log_probs: torch.Tensor, settings: SampleSettings) -> torch.Tensor:
    """Probabilities to draw from, (batch, vocab): `<unk>`/`<pad>` removed, temperature, top-k, top-p."""
    scores = log_probs.float() / settings.temperature
    scores[:, UNK_ID] = -math.inf
    scores[:, PAD_ID] = -math.inf
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
        masked = log_probs.clone()
        masked[:, UNK_ID] = -math.inf
        masked[:, PAD_ID] = -math.inf
        return masked.argmax(dim=-1)
    probs = next_token_distribution(log_probs, settings)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def encode_prime(tokenizer: Tokenizer, prime: str) -> list[int]:
    """Ids the model reads before generating: `<eos>` (start of a line), then the prime text."""
    ids = tokenizer.encode(prime) if prime else []
    if ids and all(i == UNK_ID for i in ids):
        raise CharRNNError(
            f"--prime {prime!r} is made only of units the model never saw; use text from the training corpus."
        )
    return [EOS_ID] + ids


@torch.inference_mode()
def generate(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prime: str = "",
    settings: SampleSettings | None = None,
    on_step: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
) -> list[list[int]]:
    """Generate `settings.num` continuations of `prime` together; returns the new ids of each.

    `on_step(tokens, active)` is called after every step with the (num,) tokens drawn and
    which rows were still generating, for streaming. With `until_eos` a row stops at its
    first `<eos>` (which is included in its ids).
    """
    settings = settings or SampleSettings()
    settings.validate()
    device = next(model.parameters()).device
    model.eval()
    generator = None
    if settings.seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(settings.seed)
    prime_ids = torch.tensor(encode_prime(tokenizer, prime), device=device).repeat(settings.num, 1)
    hidden, state = model(prime_ids)  # fused pass over the whole prime
    log_probs = model.log_probs(hidden[:, -1])
    outputs: list[list[int]] = [[] for _ in range(settings.num)]
    active = torch.ones(settings.num, dtype=torch.bool, device=device)
    for _ in range(settings.length):
        tokens = choose_tokens(log_probs, settings, generator)
        was_active = active.clone()
        for row, (token, keep) in enumerate(zip(tokens.tolist(), was_active.tolist(), strict=True)):
            if keep:  # one host copy per step, not one tensor read per row
                outputs[row].append(token)
        if on_step is not None:
            on_step(tokens, was_active)
        if settings.until_eos:
            active &= tokens != EOS_ID
            if not bool(active.any()):
                break
        hidden, state = model(tokens.unsqueeze(1), state)
        log_probs = model.log_probs(hidden[:, -1])
    return outputs
