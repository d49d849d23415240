"""Scoring with the model's other guesses: for each token of a sentence, the k tokens it found most probable.

The same batched teacher-forced pass as `charrnn.lm.scoring` (so log P(token | before) is the
scorer's value), also keeping the top-k of P(. | <eos>, w_1..w_{t-1}) at every position t.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from charrnn.core.scoring import (
    SentenceScore,
    batched_target_log_probs,
    default_batch_tokens,
    encode_sentence,
    sentence_score,
)
from charrnn.core.tokenizers import Tokenizer
from charrnn.lm.model import LanguageModel


@dataclass
class Alternative:
    """A token the model considered at one position, with its log-probability (natural log)."""

    token: str
    token_id: int
    logprob: float


@dataclass
class ScoredWithAlternatives:
    """A sentence's score and, at each predicted position, the model's top-k tokens (most probable first)."""

    score: SentenceScore
    alternatives: list[list[Alternative]]  # one list per predicted token, closing <eos> included

    def to_dict(self) -> dict:
        return {**self.score.to_dict(), "alternatives": [[asdict(a) for a in row] for row in self.alternatives]}


@torch.inference_mode()
def score_with_alternatives(
    model: LanguageModel,
    tokenizer: Tokenizer,
    sentences: list[str],
    k: int = 5,
    oov: str = "penalty",
    oov_logprob: float | None = None,
) -> list[ScoredWithAlternatives]:
    """Score each sentence as `LanguageModelRun.score` does (same OOV policy) and keep the top-`k` tokens at every position."""
    model.eval()
    device = next(model.parameters()).device
    encoded = [encode_sentence(tokenizer, s) for s in sentences]
    top: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    k = max(1, min(k, tokenizer.vocab_size))

    def run_batch(rows: list[int], inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hidden, _ = model(inputs.to(device))
        log_probs = model.log_probs(hidden)  # (rows, time, vocab)
        values, ids = log_probs.topk(k, dim=-1)  # (rows, time, k)
        for r, i in enumerate(rows):
            top[i] = (values[r].float().cpu(), ids[r].cpu())
        return log_probs.gather(-1, targets.to(device).unsqueeze(-1)).squeeze(-1)

    vocab = model.config.vocab_size
    per_token = batched_target_log_probs(encoded, default_batch_tokens(vocab), run_batch, vocab)
    results = []
    for i, (sentence, ids, logps) in enumerate(zip(sentences, encoded, per_token, strict=True)):
        values, top_ids = top[i]
        rows = [
            [
                Alternative(tokenizer.id_to_token(int(t)), int(t), float(v))
                for v, t in zip(values[pos], top_ids[pos], strict=True)
            ]
            for pos in range(len(ids))
        ]
        score = sentence_score(tokenizer, sentence, ids, logps, oov, oov_logprob)
        results.append(ScoredWithAlternatives(score, rows))
    return results
