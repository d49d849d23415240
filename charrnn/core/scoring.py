"""The sentence scorer both models share: log P of a sentence as the sum of its tokens' conditional log-probabilities.

A sentence w_1..w_n is scored as log P = sum_t log P(w_t | <eos>, w_1..w_{t-1}) + log P(<eos> | w_1..w_n):
the model reads `<eos>` (start of a line) then the sentence, and must predict every token and
the closing `<eos>`. Perplexity is exp(-log P / n) with n counting that `<eos>`.

Out-of-vocabulary tokens: `<unk>` stands for every unseen word at once, so P(<unk> | before) is
not the probability of the word that was there. `oov` says how an `<unk>` target counts:
  include   log P(<unk> | before), as the model gives it (n counts it);
  skip      left out of log P and of n, and counted in `n_skipped` (as SRILM's `ppl` does);
  penalty   log P(<unk> | before) + oov_logprob: the model's mass for "some unseen word" times a
            fixed P(word | <unk>), by default 1/V (V the vocabulary size), so an unseen word is
            never more probable than the <unk> class shared among V words (n counts it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.sampling import NOT_FINITE
from charrnn.core.special_tokens import EOS_ID, PAD_ID, UNK_ID
from charrnn.core.tokenizers import Tokenizer

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
    oov: str = "include"  # how <unk> targets were counted (see the module docstring)
    n_skipped: int = 0  # <unk> targets left out of logprob and n_tokens (oov "skip")

    def to_dict(self) -> dict:
        return asdict(self)


def encode_sentence(tokenizer: Tokenizer, sentence: str) -> list[int]:
    """The ids a sentence is scored on: its tokens and a closing `<eos>`."""
    if not sentence.strip():
        raise CharRNNError("Cannot score an empty sentence; give some text.")
    return tokenizer.encode(sentence) + [EOS_ID]


def pad_sequences(sequences: list[list[int]], length: int | None = None) -> torch.Tensor:
    """Right-pad id lists with `<pad>` into a (len(sequences), length) int64 tensor."""
    length = length if length is not None else max((len(s) for s in sequences), default=0)
    out = torch.full((len(sequences), length), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


def teacher_inputs(targets: torch.Tensor) -> torch.Tensor:
    """Decoder inputs for padded targets (batch, time): `<eos>` then every target but the last."""
    start = torch.full((targets.shape[0], 1), EOS_ID, dtype=targets.dtype, device=targets.device)
    return torch.cat([start, targets[:, :-1]], dim=1)


def batched_target_log_probs(
    sequences: list[list[int]],
    max_batch_tokens: int,
    run_batch: Callable[[list[int], torch.Tensor, torch.Tensor], torch.Tensor],
    vocab: int = 0,
) -> list[list[float]]:
    """The shared scoring loop: log P of each token of each sequence, computed in padded batches.

    Sequences are sorted by length and right-padded; the model reads `<eos>` then every token
    but the last (teacher forcing) and must predict each token. `run_batch(rows, inputs, targets)`
    gets the indices of the batch's sequences and (rows, longest) int64 CPU tensors and returns
    log P(targets) of the same shape. The models are causal, so padding never changes a real
    position's value.
    """
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    if order:
        check_sentence_fits(len(sequences[order[0]]), vocab)
    results: list[list[float]] = [[] for _ in sequences]
    start = 0
    while start < len(order):
        longest = len(sequences[order[start]])
        rows = max(1, min(len(order) - start, max_batch_tokens // max(longest, 1)))
        batch_ids = order[start : start + rows]
        targets = pad_sequences([sequences[i] for i in batch_ids], longest)
        logp = run_batch(batch_ids, teacher_inputs(targets), targets).float().cpu()  # (rows, longest)
        if bool(torch.isnan(logp).any()):
            raise CharRNNError(NOT_FINITE)
        for r, i in enumerate(batch_ids):
            results[i] = logp[r, : len(sequences[i])].tolist()
        start += rows
    return results


BYTES_PER_SCORE = 12  # per token and vocabulary entry: the logits, their log-softmax, a copy on the way


def check_sentence_fits(tokens: int, vocab: int) -> None:
    """Refuse a sentence whose scores (tokens x vocabulary, computed at once) need more than half the free memory."""
    from charrnn.core.memory import available_bytes, gib

    needed = tokens * max(vocab, 1) * BYTES_PER_SCORE
    free = available_bytes()
    if free is not None and needed > free // 2:
        raise CharRNNError(
            f"A sentence of {tokens:,} tokens needs about {gib(needed)} of memory to score against a vocabulary "
            f"of {vocab:,}, but {gib(free)} is available; split it into shorter sentences (charrnn eval FILE "
            "scores a whole text as a stream)."
        )


def default_batch_tokens(vocab: int) -> int:
    """Tokens per scoring batch: bounds the (tokens, vocab) softmax, and stays cache-sized.

    Past ~16k tokens a batch only spills out of the CPU caches (3,000 Tiny Shakespeare lines,
    2x384 LSTM, 1 thread: 157 sentences/s at 238k tokens per batch, 457 at 16k).
    """
    return max(64, min(16_384, 16_000_000 // max(vocab, 1)))


OOV_POLICIES = ("include", "skip", "penalty")


def check_oov(oov: str, oov_logprob: float | None) -> None:
    """Refuse an unknown OOV policy or a positive/non-finite --oov-logprob."""
    if oov not in OOV_POLICIES:
        raise CharRNNError(f"--oov must be include, skip or penalty, got {oov!r}.")
    if oov_logprob is not None and not (math.isfinite(oov_logprob) and oov_logprob <= 0):
        raise CharRNNError(f"--oov-logprob is a natural log of a probability: a number <= 0, got {oov_logprob}.")


def oov_total(
    ids: list[int], logps: list[float], vocab_size: int, oov: str = "include", oov_logprob: float | None = None
) -> tuple[float, int, int]:
    """(log P, tokens counted, <unk> targets skipped) of target `ids` under an OOV policy (module docstring)."""
    check_oov(oov, oov_logprob)
    penalty = -math.log(max(vocab_size, 1)) if oov_logprob is None else oov_logprob
    total, counted, skipped = 0.0, 0, 0
    for token, logp in zip(ids, logps, strict=True):
        if token == UNK_ID and oov == "skip":
            skipped += 1
            continue
        total += logp + (penalty if token == UNK_ID and oov == "penalty" else 0.0)
        counted += 1
    return total, counted, skipped


def sentence_score(
    tokenizer: Tokenizer,
    sentence: str,
    ids: list[int],
    logps: list[float],
    oov: str = "include",
    oov_logprob: float | None = None,
) -> SentenceScore:
    """The score of one sentence from its target ids and their log P (OOV policy: module docstring)."""
    total, counted, skipped = oov_total(ids, logps, tokenizer.vocab_size, oov, oov_logprob)
    return SentenceScore(
        sentence=sentence,
        tokens=tokenizer.tokens(ids),
        token_ids=ids,
        token_logprobs=logps,
        logprob=total,
        log10prob=total * LOG10_E,
        n_tokens=counted,
        n_unk=sum(1 for i in ids if i == UNK_ID),
        perplexity=math.exp(-total / counted) if counted else float("nan"),
        oov=oov,
        n_skipped=skipped,
    )
