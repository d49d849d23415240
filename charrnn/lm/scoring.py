"""Scoring sentences with a language model: log P(sentence), perplexity and per-token detail.

See `charrnn.core.scoring` for the definition; this module runs the language model over the
sentences in padded batches.
"""

from __future__ import annotations

import torch

from charrnn.core.scoring import (
    SentenceScore,
    batched_target_log_probs,
    check_oov,
    default_batch_tokens,
    encode_sentence,
    sentence_score,
)
from charrnn.core.tokenizers import Tokenizer
from charrnn.lm.model import LanguageModel


@torch.inference_mode()
def score_token_ids(
    model: LanguageModel, sequences: list[list[int]], max_batch_tokens: int | None = None
) -> list[list[float]]:
    """log P of each token of each sequence given `<eos>` and the tokens before it.

    Sequences are sorted by length and padded in batches; the recurrent stack is causal, so
    right padding leaves every real position's value unchanged.
    """
    model.eval()
    device = next(model.parameters()).device

    def run_batch(rows: list[int], inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hidden, _ = model(inputs.to(device))
        return model.target_log_probs(hidden, targets.to(device))

    budget = default_batch_tokens(model.config.vocab_size) if max_batch_tokens is None else max_batch_tokens
    return batched_target_log_probs(sequences, budget, run_batch, model.config.vocab_size)


def score_sentences(
    model: LanguageModel,
    tokenizer: Tokenizer,
    sentences: list[str],
    oov: str = "include",
    oov_logprob: float | None = None,
) -> list[SentenceScore]:
    """Score every sentence (batched); see `charrnn.core.scoring` for the definition and the OOV policies."""
    check_oov(oov, oov_logprob)
    encoded = [encode_sentence(tokenizer, s) for s in sentences]
    per_token = score_token_ids(model, encoded)
    return [
        sentence_score(tokenizer, sentence, ids, logps, oov, oov_logprob)
        for sentence, ids, logps in zip(sentences, encoded, per_token, strict=True)
    ]
