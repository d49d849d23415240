"""Sentence scoring against a one-step-at-a-time reference, batching, and the pear/pair example."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from charrnn.core.config import TokenizerConfig
from charrnn.core.errors import CharRNNError
from charrnn.core.special_tokens import EOS_ID, UNK_ID
from charrnn.core.tokenizers import build_tokenizer
from charrnn.lm.config import ModelConfig
from charrnn.lm.model import LanguageModel
from charrnn.lm.run import LanguageModelRun
from charrnn.lm.scoring import score_sentences
from charrnn.lm.training import train_language_model
from tests.support import tiny_config

SENTENCES = ["The king is dead.", "Long live the king!", "a", "What light through yonder window breaks?"]


def reference_logprob(model: LanguageModel, ids: list[int]) -> float:
    """log P computed one token at a time, carrying the state by hand."""
    total, state, previous = 0.0, None, EOS_ID
    with torch.no_grad():
        for token in ids:
            hidden, state = model(torch.tensor([[previous]]), state)
            total += float(torch.log_softmax(model.head(hidden[0, -1]), dim=-1)[token])
            previous = token
    return total


@pytest.mark.parametrize("level", ["char", "word"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_score_equals_stepwise_log_softmax_sum(level: str, cell: str) -> None:
    tokenizer = build_tokenizer("\n".join(SENTENCES), TokenizerConfig(level=level))
    torch.manual_seed(1)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, cell=cell, embed=8, hidden=16)).eval()
    for score in score_sentences(model, tokenizer, SENTENCES + ["The queen 漢 is dead."]):
        assert score.token_ids[-1] == EOS_ID and score.n_tokens == len(score.token_ids)
        assert score.logprob == pytest.approx(reference_logprob(model, score.token_ids), abs=1e-4)
        assert score.perplexity == pytest.approx(math.exp(-score.logprob / score.n_tokens))
        assert score.log10prob == pytest.approx(score.logprob / math.log(10))
        assert score.n_unk == score.token_ids.count(UNK_ID)
        assert sum(score.token_logprobs) == pytest.approx(score.logprob)


def test_batched_scoring_equals_one_by_one() -> None:
    tokenizer = build_tokenizer("\n".join(SENTENCES), TokenizerConfig(level="char"))
    torch.manual_seed(2)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embed=8, hidden=16)).eval()
    many = SENTENCES * 5 + ["x" * 300]  # mixed lengths, one far longer than the rest
    batched = score_sentences(model, tokenizer, many)
    for sentence, score in zip(many, batched, strict=True):
        alone = score_sentences(model, tokenizer, [sentence])[0]
        assert score.sentence == sentence
        assert score.logprob == pytest.approx(alone.logprob, abs=1e-4)


def test_adaptive_softmax_scores_are_exact_probabilities() -> None:
    words = " ".join(f"w{i}" for i in range(400))
    tokenizer = build_tokenizer(words, TokenizerConfig(level="word"))
    torch.manual_seed(3)
    model = LanguageModel(
        ModelConfig(vocab_size=tokenizer.vocab_size, embed=8, hidden=16, softmax="adaptive")
    ).eval()
    score = score_sentences(model, tokenizer, ["w1 w2 w300 w399"])[0]
    total, state, previous = 0.0, None, EOS_ID
    with torch.no_grad():
        for token in score.token_ids:
            hidden, state = model(torch.tensor([[previous]]), state)
            total += float(model.head.log_prob(hidden[0])[0, token])
            previous = token
    assert score.logprob == pytest.approx(total, abs=1e-4)


def test_empty_sentence_is_refused() -> None:
    tokenizer = build_tokenizer("abc", TokenizerConfig(level="char"))
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embed=4, hidden=4))
    with pytest.raises(CharRNNError, match="empty sentence"):
        score_sentences(model, tokenizer, ["  "])


def test_pear_salad_beats_pair_salad(tmp_path: Path) -> None:
    lines = [
        "The apple and pear salad.",
        "She made a pear salad for lunch.",
        "He bought a pair of shoes.",
        "A pair of socks and a pear tart.",
        "The apple pie was warm.",
        "We ate the salad and the apple.",
    ]
    corpus = tmp_path / "fruit.txt"
    corpus.write_text("\n".join(lines * 40) + "\n", encoding="utf-8")
    config = tiny_config(corpus, level="word", max_steps=120, lr=1e-2, bptt=8, eval_every=40)
    train_language_model(config, tmp_path / "run")
    run = LanguageModelRun.load(tmp_path / "run")
    tokenizer, model = run.tokenizer, run.model
    pear, pair = score_sentences(model, tokenizer, ["The apple and pear salad.", "The apple and pair salad."])
    assert pear.n_unk == pair.n_unk == 0
    assert pear.logprob > pair.logprob + 1.0
