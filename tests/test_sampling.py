"""Sampling: <unk> never emitted, greedy determinism, temperature, top-k/top-p, priming, <eos> stops."""

from __future__ import annotations

import math

import pytest
import torch

from charrnn.core.config import TokenizerConfig
from charrnn.core.errors import CharRNNError
from charrnn.core.sampling import SampleSettings, next_token_distribution
from charrnn.core.special_tokens import EOS_ID, PAD_ID, UNK_ID
from charrnn.core.tokenizers import build_tokenizer
from charrnn.lm.config import ModelConfig
from charrnn.lm.model import LanguageModel
from charrnn.lm.sampling import generate

TEXT = "abcde fgh\nhello world\n"


@pytest.fixture
def tokenizer():
    return build_tokenizer(TEXT, TokenizerConfig(level="char"))


@pytest.fixture
def model(tokenizer) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embed=8, hidden=16, layers=1)).eval()


class RiggedModel(LanguageModel):
    """Puts 99% of the probability on <unk>; the rest follows `rest` (over ids 3..)."""

    def __init__(self, vocab_size: int, rest: torch.Tensor) -> None:
        super().__init__(ModelConfig(vocab_size=vocab_size, embed=4, hidden=4, layers=1))
        probs = torch.zeros(vocab_size)
        probs[UNK_ID] = 0.99
        probs[3:] = 0.01 * rest / rest.sum()
        self.fixed = probs.log()

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.fixed.expand(*hidden.shape[:-1], -1)


def test_unk_is_never_emitted_and_the_rest_keeps_its_proportions(tokenizer) -> None:
    rest = torch.arange(1, tokenizer.vocab_size - 2, dtype=torch.float)
    model = RiggedModel(tokenizer.vocab_size, rest).eval()
    samples = generate(model, tokenizer, settings=SampleSettings(length=5, num=2000, seed=1))
    drawn = torch.tensor([t for row in samples for t in row])
    assert UNK_ID not in drawn.tolist() and PAD_ID not in drawn.tolist()
    freq = torch.bincount(drawn, minlength=tokenizer.vocab_size)[3:].float() / len(drawn)
    expected = rest / rest.sum()  # "resample until not <unk>" == renormalise without <unk>
    assert torch.max(torch.abs(freq - expected)) < 0.02


def test_greedy_is_deterministic_and_takes_the_argmax(model, tokenizer) -> None:
    settings = SampleSettings(length=12, greedy=True)
    first = generate(model, tokenizer, "hel", settings)[0]
    assert first == generate(model, tokenizer, "hel", settings)[0]
    ids = torch.tensor([[EOS_ID] + tokenizer.encode("hel")])
    expected, state = [], None
    with torch.no_grad():
        for _ in range(12):
            hidden, state = model(ids, state)
            log_probs = model.log_probs(hidden[:, -1])
            log_probs[:, [UNK_ID, PAD_ID]] = -math.inf
            token = int(log_probs.argmax())
            expected.append(token)
            ids = torch.tensor([[token]])
    assert first == expected


def test_temperature_reshapes_the_distribution() -> None:
    log_probs = torch.log(torch.tensor([[0.0, 0.0, 0.1, 0.2, 0.3, 0.4]]) + 1e-30)
    base = next_token_distribution(log_probs, SampleSettings(temperature=1.0))
    torch.testing.assert_close(base[0, 2:], torch.tensor([0.1, 0.2, 0.3, 0.4]))
    for t in (0.5, 2.0):
        p = next_token_distribution(log_probs, SampleSettings(temperature=t))[0, 2:]
        expected = torch.tensor([0.1, 0.2, 0.3, 0.4]) ** (1 / t)
        torch.testing.assert_close(p, expected / expected.sum())
    entropy = [
        float(-(p * p.clamp_min(1e-30).log()).sum())
        for p in (next_token_distribution(log_probs, SampleSettings(temperature=t)) for t in (0.3, 1.0, 3.0))
    ]
    assert entropy[0] < entropy[1] < entropy[2]


def test_top_k_and_top_p_filters() -> None:
    log_probs = torch.log(torch.tensor([[0.0, 0.0, 0.05, 0.15, 0.3, 0.5]]) + 1e-30)
    top2 = next_token_distribution(log_probs, SampleSettings(top_k=2))[0]
    torch.testing.assert_close(top2[2:], torch.tensor([0.0, 0.0, 0.375, 0.625]))
    nucleus = next_token_distribution(log_probs, SampleSettings(top_p=0.7))[0]
    torch.testing.assert_close(nucleus[2:], torch.tensor([0.0, 0.0, 0.375, 0.625]))
    one = next_token_distribution(log_probs, SampleSettings(top_p=0.1))[0]
    assert one.argmax() == 5 and one[5] == 1.0


def test_until_eos_stops_each_sample_at_its_line_end(model, tokenizer) -> None:
    samples = generate(model, tokenizer, settings=SampleSettings(length=400, until_eos=True, num=8, seed=3))
    for row in samples:
        assert EOS_ID not in row[:-1]
        assert row[-1] == EOS_ID or len(row) == 400
    assert any(len(row) < 400 for row in samples)


def test_seed_repeats_samples(model, tokenizer) -> None:
    settings = SampleSettings(length=30, seed=5)
    assert generate(model, tokenizer, "hello", settings) == generate(model, tokenizer, "hello", settings)
    other = SampleSettings(length=30, seed=6)
    assert generate(model, tokenizer, "hello", settings) != generate(model, tokenizer, "hello", other)


@pytest.mark.parametrize(
    "settings",
    [
        SampleSettings(temperature=0.0),
        SampleSettings(temperature=-1.0),
        SampleSettings(temperature=float("nan")),
        SampleSettings(temperature=float("inf")),
        SampleSettings(num=0),
        SampleSettings(length=-1),
        SampleSettings(top_k=0),
        SampleSettings(top_p=0.0),
        SampleSettings(top_p=1.5),
    ],
)
def test_bad_settings_are_refused(settings: SampleSettings, model, tokenizer) -> None:
    with pytest.raises(CharRNNError):
        generate(model, tokenizer, settings=settings)


def test_prime_of_only_unknown_units_is_refused(model, tokenizer) -> None:
    with pytest.raises(CharRNNError, match="never saw"):
        generate(model, tokenizer, "漢字", SampleSettings(length=3))
