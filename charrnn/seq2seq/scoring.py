"""Scoring with a seq2seq model: log P(target | source) per pair, with per-token detail.

The same definition as the language model's (`charrnn.core.scoring`), conditioned on the source:
log P(y | x) = sum_t log P(y_t | x, <eos>, y_1..y_{t-1}), the closing `<eos>` included.
"""

from __future__ import annotations

import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.scoring import (
    SentenceScore,
    batched_target_log_probs,
    default_batch_tokens,
    encode_sentence,
    pad_sequences,
    sentence_score,
)
from charrnn.core.tokenizers import Tokenizer
from charrnn.seq2seq.model import Seq2Seq
from charrnn.seq2seq.pairs import encode_source


@torch.inference_mode()
def score_pair_ids(
    model: Seq2Seq,
    sources: list[list[int]],
    targets: list[list[int]],
    max_batch_tokens: int | None = None,
) -> list[list[float]]:
    """log P of each target token given the source and the target tokens before it (seq2seq).

    `targets` are scored as given (end them with `<eos>`); the same batching as `score_token_ids`,
    with each batch's sources padded alongside.
    """
    model.eval()
    device = next(model.parameters()).device

    def run_batch(rows: list[int], inputs: torch.Tensor, padded: torch.Tensor) -> torch.Tensor:
        src = pad_sequences([sources[i] for i in rows]).to(device)
        lengths = torch.tensor([len(sources[i]) for i in rows], dtype=torch.long)
        return model.target_log_probs(src, lengths, inputs.to(device), padded.to(device))

    budget = default_batch_tokens(model.config.target_vocab_size) if max_batch_tokens is None else max_batch_tokens
    return batched_target_log_probs(targets, budget, run_batch, model.config.target_vocab_size)


def score_pairs(
    model: Seq2Seq,
    source_tokenizer: Tokenizer,
    target_tokenizer: Tokenizer,
    sources: list[str],
    targets: list[str],
) -> list[SentenceScore]:
    """Score log P(target | source) for every pair (batched); each target's closing `<eos>` counts."""
    if any(not s.strip() for s in sources):
        raise CharRNNError("Cannot score a pair with an empty source sentence; give some text.")
    # stripped, as `translate` and the pair reader do, so a pair scores the same ids wherever it comes from
    source_ids = [encode_source(source_tokenizer, s.strip()) for s in sources]
    target_ids = [encode_sentence(target_tokenizer, t.strip()) for t in targets]
    per_token = score_pair_ids(model, source_ids, target_ids)
    return [
        sentence_score(target_tokenizer, target, ids, logps)
        for target, ids, logps in zip(targets, target_ids, per_token, strict=True)
    ]
