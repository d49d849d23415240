"""The encoder–decoder: attention weights, fused vs step decoding, overfitting, copy/reverse, beam search."""

from __future__ import annotations

import math

import pytest
import torch

from charrnn.core.special_tokens import EOS_ID, UNK_ID
from charrnn.seq2seq.config import ATTENTIONS, Seq2SeqConfig
from charrnn.seq2seq.decoding import TranslateSettings, batched_beam_search, greedy_search, translate_ids
from charrnn.seq2seq.model import Seq2Seq
from charrnn.seq2seq.pairs import make_batch
from charrnn.seq2seq.scoring import score_pair_ids
from tests.beam_oracle import beam_search

torch.set_num_threads(1)

VOCAB = 14  # ids 0..2 are <pad> <unk> <eos>; 3..13 are symbols


def tiny(attention: str, cell: str = "gru", *, hidden: int = 32, layers: int = 1, **kw) -> Seq2Seq:
    config = Seq2SeqConfig(VOCAB, VOCAB, cell, 16, hidden, layers, 0.0, True, attention, **kw)
    return Seq2Seq(config)


def random_pairs(n: int, low: int, high: int, generator: torch.Generator, reverse: bool = True):
    """Random symbol strings and their reversal (or copy): (source + <eos>, target) id lists."""
    pairs = []
    for _ in range(n):
        length = int(torch.randint(low, high + 1, (1,), generator=generator))
        symbols = (torch.randint(3, VOCAB, (length,), generator=generator)).tolist()
        pairs.append((symbols + [EOS_ID], symbols[::-1] if reverse else symbols))
    return pairs


def exact_match(model: Seq2Seq, pairs, max_length: int) -> float:
    hyps = greedy_search(model, [s for s, _ in pairs], TranslateSettings(max_length=max_length))
    return sum(h.ids == t and h.finished for h, (_, t) in zip(hyps, pairs, strict=True)) / len(pairs)


def train_steps(model: Seq2Seq, pairs, steps: int, batch: int, lr: float, seed: int = 0, check=None) -> None:
    """Adam on random batches (or the whole set); stops early when `check()` says so (checked every 25 steps)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(1, steps + 1):
        rows = torch.randint(0, len(pairs), (batch,), generator=generator).tolist() if batch else range(len(pairs))
        b = make_batch([pairs[i][0] for i in rows], [pairs[i][1] for i in rows])
        logits, _ = model(b.src, b.src_lengths, b.tgt_in)
        loss = model.loss(logits, b.tgt_out)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if check is not None and step % 25 == 0 and check():
            return
        model.train()


@pytest.fixture
def batch():
    sources = [[5, 6, 7, 8, 9, EOS_ID], [4, 3, EOS_ID], [10, 11, 12, EOS_ID]]
    targets = [[9, 8, 7], [3, 4, 5, 6], [12]]
    return make_batch(sources, targets)


@pytest.mark.parametrize("attention", [a for a in ATTENTIONS if a != "none"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_attention_is_a_distribution_over_real_source_positions(attention: str, cell: str, batch) -> None:
    torch.manual_seed(0)
    model = tiny(attention, cell, layers=2).eval()
    _, weights = model(batch.src, batch.src_lengths, batch.tgt_in)
    assert weights.shape == (3, batch.tgt_in.shape[1], batch.src.shape[1])
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:2]), atol=1e-6)
    assert bool((weights >= 0).all())
    for row, length in enumerate(batch.src_lengths.tolist()):
        assert bool((weights[row, :, length:] == 0).all()), "padding must get exactly zero weight"
        assert bool((weights[row, :, :length] > 0).all())


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_step_by_step_decoding_equals_teacher_forced_forward(attention: str, cell: str, batch) -> None:
    torch.manual_seed(1)
    model = tiny(attention, cell, layers=2, context="input").eval()
    logits, weights = model(batch.src, batch.src_lengths, batch.tgt_in)
    memory = model.encode(batch.src, batch.src_lengths)
    state, steps, step_weights = memory.init_state, [], []
    for t in range(batch.tgt_in.shape[1]):
        log_probs, state, w = model.decode_step(batch.tgt_in[:, t], state, memory)
        steps.append(log_probs)
        step_weights.append(w)
    assert torch.allclose(torch.stack(steps, 1), torch.log_softmax(logits, -1), atol=1e-5)
    if weights is not None:
        assert torch.allclose(torch.stack(step_weights, 1), weights, atol=1e-6)


def test_encoder_and_decoder_are_recurrent_cores() -> None:
    from charrnn.core.recurrent import RecurrentCore

    model = tiny("bahdanau", "lstm")
    assert isinstance(model.encoder.core, RecurrentCore) and isinstance(model.decoder, RecurrentCore)
    assert model.encoder.core.directions == 2 and model.encoder.core.output_size == 32


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_tiny_models_overfit_a_handful_of_pairs(attention: str, cell: str) -> None:
    pairs = [
        ([3, 4, 5, EOS_ID], [6, 7]),
        ([4, 5, EOS_ID], [8, 9, 10]),
        ([5, 3, 3, 4, EOS_ID], [11]),
        ([6, 7, 8, 9, EOS_ID], [12, 13, 12, 6]),
        ([9, EOS_ID], [7, 7, 3]),
        ([10, 11, EOS_ID], [4, 13]),
    ]
    torch.manual_seed(2)
    model = tiny(attention, cell)
    train_steps(model, pairs, 400, 0, 0.02, check=lambda: exact_match(model, pairs, 8) == 1.0)
    assert exact_match(model, pairs, 8) == 1.0


def test_reverse_task_needs_attention_beyond_the_last_state(capsys) -> None:
    generator = torch.Generator().manual_seed(1)
    train, test = random_pairs(4000, 8, 12, generator), random_pairs(100, 8, 12, generator)
    rates = {}
    for attention in ("none", "luong-general"):
        torch.manual_seed(0)
        model = tiny(attention)
        train_steps(model, train, 300, 32, 0.01)
        rates[attention] = exact_match(model, test, 14)
    with capsys.disabled():
        print(
            f"\n[reverse 8-12 random symbols, hidden 32, 300 steps] exact match: "
            f"no attention {rates['none']:.0%}, luong-general attention {rates['luong-general']:.0%}"
        )
    assert rates["luong-general"] >= 0.8
    assert rates["none"] <= 0.2


@pytest.fixture(scope="module")
def trained() -> tuple[Seq2Seq, list]:
    """A small Bahdanau model trained briefly on reversal: confident but not perfect, so beams differ."""
    generator = torch.Generator().manual_seed(3)
    pairs = random_pairs(500, 3, 6, generator)
    torch.manual_seed(3)
    model = tiny("bahdanau", "lstm", hidden=24)
    train_steps(model, pairs, 60, 32, 0.01)
    return model.eval(), random_pairs(12, 3, 7, generator)


def test_beam_of_one_equals_greedy(trained) -> None:
    model, pairs = trained
    sources = [s for s, _ in pairs]
    settings = TranslateSettings(beam=1, max_length=9)
    greedy = greedy_search(model, sources, settings)
    for source, g in zip(sources, greedy, strict=True):
        (best, *_) = batched_beam_search(model, [source], settings)[0]
        assert best.ids == g.ids and best.finished == g.finished
        assert math.isclose(best.logprob, g.logprob, abs_tol=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_scores_equal_the_scorer(trained, alpha: float) -> None:
    model, pairs = trained
    settings = TranslateSettings(beam=4, max_length=12, length_penalty=alpha)
    for source, _ in pairs:
        hyps = batched_beam_search(model, [source], settings)[0]
        finished = [h for h in hyps if h.finished]
        assert finished
        scored = score_pair_ids(model, [source] * len(finished), [h.ids + [EOS_ID] for h in finished])
        for hyp, logps in zip(finished, scored, strict=True):
            assert math.isclose(hyp.logprob, sum(logps), abs_tol=1e-4)
        scores = [h.score(alpha) for h in hyps]
        assert scores == sorted(scores, reverse=True)
        greedy = greedy_search(model, [source], settings)[0]
        if alpha == 0.0 and greedy.finished:  # beam search never finds a worse raw score than greedy
            assert hyps[0].logprob >= greedy.logprob - 1e-6


def assert_same_hypotheses(one_by_one: list, batched: list) -> None:
    """The batched search found the reference's hypotheses, in the same order, with the same scores."""
    assert len(one_by_one) == len(batched)
    for ref, got in zip(one_by_one, batched, strict=True):
        assert [(h.ids, h.finished) for h in got] == [(h.ids, h.finished) for h in ref]
        for r, g in zip(ref, got, strict=True):
            assert math.isclose(g.logprob, r.logprob, abs_tol=1e-5)
            if r.attention is not None:
                assert torch.allclose(torch.tensor(g.attention), torch.tensor(r.attention), atol=1e-5)


@pytest.mark.parametrize(("beam", "alpha", "batch_size"), [(5, 1.0, 16), (3, 0.0, 64), (2, 0.6, 7)])
def test_batched_beam_search_equals_one_by_one(trained, beam: int, alpha: float, batch_size: int) -> None:
    model, _ = trained
    sources = [s for s, _ in random_pairs(50, 1, 9, torch.Generator().manual_seed(11))]
    settings = TranslateSettings(beam=beam, max_length=12, length_penalty=alpha, batch_size=batch_size)
    reference = [beam_search(model, source, settings) for source in sources]
    assert_same_hypotheses(reference, batched_beam_search(model, sources, settings))
    assert len({tuple(h[0].ids) for h in reference}) > 10  # the sentences really differ


@pytest.mark.parametrize("attention", ["none", "luong-general"])
def test_batched_beam_search_equals_one_by_one_with_attention_rows(attention: str) -> None:
    torch.manual_seed(6)
    model = tiny(attention, "lstm", layers=2).eval()  # untrained: flat distributions, many near ties
    sources = [s for s, _ in random_pairs(20, 1, 6, torch.Generator().manual_seed(12))]
    settings = TranslateSettings(beam=4, max_length=6, batch_size=8)
    reference = [beam_search(model, source, settings, with_attention=True) for source in sources]
    assert_same_hypotheses(reference, batched_beam_search(model, sources, settings, with_attention=True))


def test_batched_beam_search_with_fewer_tokens_than_beams() -> None:
    """A 2-symbol target vocabulary: fewer than K candidates survive, so some slots stay empty."""
    torch.manual_seed(7)
    model = Seq2Seq(Seq2SeqConfig(VOCAB, 5, "gru", 16, 32, 1, 0.0, True, "luong-dot")).eval()
    sources = [s for s, _ in random_pairs(30, 1, 6, torch.Generator().manual_seed(13))]
    settings = TranslateSettings(beam=6, max_length=7, batch_size=9)
    reference = [beam_search(model, source, settings) for source in sources]
    assert_same_hypotheses(reference, batched_beam_search(model, sources, settings))


def test_unk_is_never_emitted() -> None:
    torch.manual_seed(4)
    model = tiny("luong-dot").eval()
    with torch.no_grad():
        model.head.bias.zero_()
        model.head.bias[UNK_ID] = 50.0  # the model wants <unk> everywhere
    sources = [[3, 4, 5, EOS_ID], [6, EOS_ID]]
    for beam in (1, 3):
        for hyp in translate_ids(model, sources, TranslateSettings(beam=beam, max_length=6)):
            assert UNK_ID not in hyp.ids


def test_scheduled_sampling_runs_for_every_attention(batch) -> None:
    for attention in ATTENTIONS:
        torch.manual_seed(5)
        model = tiny(attention)
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in, teacher_forcing=0.5)
        model.loss(logits, batch.tgt_out).backward()
        assert logits.shape[:2] == batch.tgt_in.shape


def test_bad_model_settings_are_reported() -> None:
    from charrnn.core.errors import CharRNNError

    with pytest.raises(CharRNNError, match="even size"):
        Seq2SeqConfig(5, 5, hidden=33, bidirectional=True).validate()
    with pytest.raises(CharRNNError, match="attention"):
        Seq2SeqConfig(5, 5, attention="luong").validate()


@pytest.mark.parametrize("score", ["luong-dot", "luong-general"])
def test_luong_scores_are_scaled_so_the_softmax_does_not_saturate(score: str) -> None:
    """e_ij = s_i · k_j / √d: with d = 256 and unit-variance states, unscaled scores (std ≈ 16) give one-hot
    rows; scaled ones (std ≈ 1) a distribution over the source."""
    from charrnn.seq2seq.attention import Attention, Memory

    torch.manual_seed(0)
    d, src = 256, 12
    outputs = torch.randn(4, src, d)
    query = torch.randn(4, 3, d)
    mask = torch.ones(4, src, dtype=torch.bool)
    peaks = {}
    for scaled in (True, False):
        torch.manual_seed(1)  # the same W for luong-general
        attention = Attention(score, d, 0, scaled)
        if score == "luong-general":
            torch.nn.init.eye_(attention.key_proj.weight)
        memory = Memory(outputs, attention.keys(outputs), mask, outputs[:, -1], torch.zeros(1, 4, d))
        _, weights = attention(query, memory)
        expected = torch.softmax(query @ outputs.transpose(1, 2) / (math.sqrt(d) if scaled else 1.0), dim=-1)
        assert torch.allclose(weights, expected, atol=1e-6)
        peaks[scaled] = float(weights.detach().max(-1).values.mean())
    assert peaks[False] > 0.9 and peaks[True] < 0.5


def test_new_runs_scale_the_scores_and_old_configs_keep_theirs_unscaled() -> None:
    from charrnn.seq2seq.config import Seq2SeqRunConfig

    assert Seq2SeqConfig().scaled_scores is True
    saved = {"model": {"attention": "luong-general"}, "format_version": 2}
    assert Seq2SeqRunConfig.migrate(saved)["model"]["scaled_scores"] is False  # written before the option existed
    assert Seq2SeqRunConfig.migrate({"model": {"scaled_scores": True}})["model"]["scaled_scores"] is True
