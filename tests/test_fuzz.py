"""Property tests: tokenizers, scoring and sampling take any Unicode text without crashing."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn.core.config import TokenizerConfig
from charrnn.core.errors import CharRNNError
from charrnn.core.sampling import SampleSettings
from charrnn.core.special_tokens import EOS_ID, UNK_ID
from charrnn.core.tokenizers import WORD_PATTERN, Tokenizer, WordTokenizer, build_tokenizer, tokenizer_from_files
from charrnn.lm.config import ModelConfig
from charrnn.lm.model import LanguageModel
from charrnn.lm.sampling import generate
from charrnn.lm.scoring import score_sentences
from tests.support import tiny_text

FEW = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Any code point hypothesis can draw (surrogates excluded: they cannot be written as UTF-8).
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)


@FEW
@given(ANY_TEXT)
def test_char_tokenizer_round_trips_any_string(text: str) -> None:
    if not text.replace("\n", ""):
        with pytest.raises(CharRNNError):
            build_tokenizer(text, TokenizerConfig(level="char"))
        return
    tokenizer = build_tokenizer(text, TokenizerConfig(level="char"))
    ids = tokenizer.encode(text)
    assert UNK_ID not in ids and ids.count(EOS_ID) == text.count("\n")
    assert tokenizer.decode(ids) == text
    reloaded = tokenizer_from_files(tokenizer.to_files())  # through the saved files too
    assert reloaded.encode(text) == ids and reloaded.decode(ids) == text


@pytest.fixture(scope="module")
def word_tokenizer() -> WordTokenizer:
    tokenizer = build_tokenizer(tiny_text(2000), TokenizerConfig(level="word"))
    assert isinstance(tokenizer, WordTokenizer)
    return tokenizer


# Text that mixes words of the vocabulary's corpus with anything at all.
MIXED_TEXT = st.lists(
    st.sampled_from(sorted(set(WORD_PATTERN.findall(tiny_text(2000))))) | ANY_TEXT, max_size=12
).map(" ".join)


@FEW
@given(MIXED_TEXT)
def test_word_tokenizer_never_crashes_and_maps_unseen_words_to_unk(
    word_tokenizer: WordTokenizer, text: str
) -> None:
    ids = word_tokenizer.encode(text)
    assert all(0 <= i < word_tokenizer.vocab_size for i in ids)
    expected: list[int] = []
    for number, line in enumerate(text.split("\n")):
        if number:
            expected.append(EOS_ID)
        for unit in word_tokenizer.split(line):
            expected.append(word_tokenizer.index.get(unit, UNK_ID))
    assert ids == expected  # known words keep their ids, every unseen word is <unk>
    unseen = [u for line in text.split("\n") for u in word_tokenizer.split(line) if u not in word_tokenizer.index]
    assert ids.count(UNK_ID) >= len(unseen)
    assert (UNK_ID in ids) == bool(unseen) or "<unk>" in text
    word_tokenizer.decode(ids)  # decoding whatever came out works too


@pytest.fixture(scope="module", params=["char", "word"])
def tiny_lm(request: pytest.FixtureRequest) -> tuple[Tokenizer, LanguageModel]:
    """An untrained but real model: the properties do not depend on training."""
    tokenizer = build_tokenizer(tiny_text(2000), TokenizerConfig(level=request.param))
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embed=8, hidden=16, layers=1, dropout=0.0))
    return tokenizer, model.eval()


@FEW
@given(st.lists(ANY_TEXT, min_size=1, max_size=4))
def test_scoring_accepts_any_unicode(tiny_lm, sentences: list[str]) -> None:
    tokenizer, model = tiny_lm
    if any(not s.strip() for s in sentences):
        with pytest.raises(CharRNNError, match="empty sentence"):
            score_sentences(model, tokenizer, sentences)
        return
    scores = score_sentences(model, tokenizer, sentences)
    for sentence, score in zip(sentences, scores, strict=True):
        assert score.n_tokens == len(tokenizer.encode(sentence)) + 1
        assert math.isfinite(score.logprob) and score.logprob < 0 and score.perplexity >= 1.0


@FEW
@given(
    ANY_TEXT,
    st.integers(0, 6),
    st.floats(0.05, 5.0),
    st.none() | st.integers(1, 60),
    st.none() | st.floats(0.01, 1.0),
)
def test_sampling_accepts_any_unicode_prime(tiny_lm, prime: str, length: int, temperature, top_k, top_p) -> None:
    tokenizer, model = tiny_lm
    options = SampleSettings(length=length, temperature=temperature, top_k=top_k, top_p=top_p, num=2, seed=3)
    ids = tokenizer.encode(prime)
    if ids and all(i == UNK_ID for i in ids):
        with pytest.raises(CharRNNError, match="--prime"):
            generate(model, tokenizer, prime, options)
        return
    outputs = generate(model, tokenizer, prime, options)
    assert [len(o) for o in outputs] == [length, length]
    assert all(0 < i < tokenizer.vocab_size and i != UNK_ID for o in outputs for i in o)
    tokenizer.decode(outputs[0])
