"""The language model's sampler: prime it with text, then draw tokens one at a time.

The model reads `<eos>` (the start of a line) and the prime text, then at each step draws the next
token from P(x_{t+1} | x_1..x_t) as `charrnn.core.sampling` shapes it: temperature or greedy,
optionally top-k/top-p, and `<unk>` never emitted. Drawing from p and redrawing whenever `<unk>`
comes up gives v with probability p(v) / (1 - p(<unk>)), exactly the distribution with `<unk>`
removed and the rest renormalised, which is what is drawn from, in one draw. Generation stops at
the length cap, or at `<eos>` with `until_eos`. `num` samples are generated together as one batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.sampling import SampleSettings, check_rows_fit, choose_tokens
from charrnn.core.special_tokens import EOS_ID, UNK_ID
from charrnn.core.tokenizers import Tokenizer
from charrnn.lm.model import LanguageModel


def encode_prime(tokenizer: Tokenizer, prime: str) -> list[int]:
    """Ids the model reads before generating: `<eos>` (start of a line), then the prime text."""
    ids = tokenizer.encode(prime) if prime else []
    if ids and all(i == UNK_ID for i in ids):
        raise CharRNNError(
            f"--prime {prime!r} is made only of units the model never saw; use text from the training corpus."
        )
    return [EOS_ID] + ids


def generate_steps(
    model: LanguageModel, tokenizer: Tokenizer, prime: str = "", settings: SampleSettings | None = None
) -> Iterator[tuple[list[int], list[bool]]]:
    """Draw `settings.num` continuations of `prime` together, yielding after every step.

    Each step yields the (num,) tokens drawn and which rows were still generating when they were
    drawn. With `until_eos` a row stops at its first `<eos>` (which it still yields).
    """
    settings = settings or SampleSettings()
    settings.validate()
    check_rows_fit(settings.num, tokenizer.vocab_size, "--num")
    device = next(model.parameters()).device
    model.eval()
    generator = None
    if settings.seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(settings.seed)
    with torch.inference_mode():
        prime_ids = torch.tensor(encode_prime(tokenizer, prime), device=device).repeat(settings.num, 1)
        hidden, state = model(prime_ids)  # fused pass over the whole prime
        log_probs = model.log_probs(hidden[:, -1])
    active = torch.ones(settings.num, dtype=torch.bool, device=device)
    for _ in range(settings.length):
        with torch.inference_mode():
            tokens = choose_tokens(log_probs, settings, generator)
            was_active = active.clone()
        yield tokens.tolist(), was_active.tolist()  # one host copy per step, not one tensor read per row
        with torch.inference_mode():
            if settings.until_eos:
                active &= tokens != EOS_ID
                if not bool(active.any()):
                    break
            hidden, state = model(tokens.unsqueeze(1), state)
            log_probs = model.log_probs(hidden[:, -1])


def generate(
    model: LanguageModel, tokenizer: Tokenizer, prime: str = "", settings: SampleSettings | None = None
) -> list[list[int]]:
    """Generate `settings.num` continuations of `prime` together; returns the new ids of each."""
    outputs: list[list[int]] = [[] for _ in range((settings or SampleSettings()).num)]
    for tokens, active in generate_steps(model, tokenizer, prime, settings):
        for row, (token, keep) in enumerate(zip(tokens, active, strict=True)):
            if keep:
                outputs[row].append(token)
    return outputs
