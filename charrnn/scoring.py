"""Sentence log-probabilities under a language model (or a seq2seq model given the source), batched.

A sentence w_1..w_n is scored as log P = sum_t log P(w_t | <eos>, w_1..w_{t-1}) + log P(<eos> | w_1..w_n):
the model reads `<eos>` (start of a line) then the sentence, and must predict every token and
the closing `<eos>`. Perplexity is exp(-log P / n) with n counting that `<eos>`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch

from charrnn.errors import CharRNNError
from charrnn.model import LanguageModel
from charrnn.pairs import encode_source, pad_sequences, teacher_inputs
from charrnn.tokenizers import EOS_ID, UNK_ID, Tokenizer

if TYPE_CHECKING:
    from charrnn.seq2seq import Seq2Seq

LOG10_E = 1.0 / math.log(10.0)


@dataclass
class SentenceScore:
    """The score of one sentence, with per-token detail."""

    sentence: str
    tokens: list[str]  # the predicted tokens, closing <eos> included
    token_ids: list[int]
    token_logprobs: list[float]  # natural log of each conditional probability
    logprob: float  # natural log
    log10prob: float
    n_tokens: int
    n_unk: int
    perplexity: float

    def to_dict(self) -> dict:
        return asdict(self)


def encode_sentence(tokenizer: Tokenizer, sentence: str) -> list[int]:
    """The ids a sentence is scored on: its tokens and a closing `<eos>`."""
    if not sentence.strip():
        raise CharRNNError("Cannot score an empty sentence; give some text.")
    return tokenizer.encode(sentence) + [EOS_ID]


def batched_target_log_probs(
    sequences: list[list[int]],
    max_batch_tokens: int,
    run_batch: Callable[[list[int], torch.Tensor, torch.Tensor], torch.Tensor],
) -> list[list[float]]:
    """The shared scoring loop: log P of each token of each sequence, computed in padded batches.

    Sequences are sorted by length and right-padded; the model reads `<eos>` then every token
    but the last (teacher forcing) and must predict each token. `run_batch(rows, inputs, targets)`
    gets the indices of the batch's sequences and (rows, longest) int64 CPU tensors and returns
    log P(targets) of the same shape. The models are causal, so padding never changes a real
    position's value.
    """
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    results: list[list[float]] = [[] for _ in sequences]
    start = 0
    while start < len(order):
        longest = len(sequences[order[start]])
        rows = max(1, min(len(order) - start, max_batch_tokens // max(longest, 1)))
        batch_ids = order[start : start + rows]
        targets = pad_sequences([sequences[i] for i in batch_ids], longest)
        logp = run_batch(batch_ids, teacher_inputs(targets), targets).float().cpu()  # (rows, longest)
        for r, i in enumerate(batch_ids):
            results[i] = logp[r, : len(sequences[i])].tolist()
        start += rows
    return results


def _default_batch_tokens(vocab: int) -> int:
    """Tokens per scoring batch: bounds the (tokens, vocab) softmax, and stays cache-sized.

    Past ~16k tokens a batch only spills out of the CPU caches (3,000 Tiny Shakespeare lines,
    2x384 LSTM, 1 thread: 157 sentences/s at 238k tokens per batch, 457 at 16k).
    """
    return max(64, min(16_384, 16_000_000 // max(vocab, 1)))


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

    budget = _default_batch_tokens(model.config.vocab_size) if max_batch_tokens is None else max_batch_tokens
    return batched_target_log_probs(sequences, budget, run_batch)


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

    budget = (
        _default_batch_tokens(model.config.target_vocab_size) if max_batch_tokens is None else max_batch_tokens
    )
    return batched_target_log_probs(targets, budget, run_batch)


def _sentence_score(tokenizer: Tokenizer, sentence: str, ids: list[int], logps: list[float]) -> SentenceScore:
    total = sum(logps)
    return SentenceScore(
        sentence=sentence,
        tokens=tokenizer.tokens(ids),
        token_ids=ids,
        token_logprobs=logps,
        logprob=total,
        log10prob=total * LOG10_E,
        n_tokens=len(ids),
        n_unk=sum(1 for i in ids if i == UNK_ID),
        perplexity=math.exp(-total / len(ids)),
    )


def score_sentences(model: LanguageModel, tokenizer: Tokenizer, sentences: list[str]) -> list[SentenceScore]:
    """Score every sentence (batched); see the module docstring for the definition."""
    encoded = [encode_sentence(tokenizer, s) for s in sentences]
    per_token = score_token_ids(model, encoded)
    return [
        _sentence_score(tokenizer, sentence, ids, logps)
        for sentence, ids, logps in zip(sentences, encoded, per_token, strict=True)
    ]


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
        _sentence_score(target_tokenizer, target, ids, logps)
        for target, ids, logps in zip(targets, target_ids, per_token, strict=True)
    ]
