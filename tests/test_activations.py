"""The library functions behind the web page: per-layer activations, find-units, top-k alternatives."""

from __future__ import annotations

import pytest
import torch

import charrnn
from charrnn.core.errors import CharRNNError
from charrnn.core.special_tokens import EOS_ID
from charrnn.lm.activations import collect_activations, correlations, find_units, pattern_signal
from charrnn.lm.alternatives import score_with_alternatives

TEXT = 'He said "no (not now)" and left.\nThen "yes".'


def _train(
    tmp_path_factory: pytest.TempPathFactory, text: str, cell: str, layers: int
) -> charrnn.LanguageModelRun:
    root = tmp_path_factory.mktemp(f"act-{cell}")
    corpus = root / "corpus.txt"
    corpus.write_text(text + '\n"quoted (bracketed) words"\n' * 3, encoding="utf-8")
    result = charrnn.train(
        corpus, out=root / "run", max_steps=6, hidden=12, embed=8, layers=layers, cell=cell,
        batch_size=4, bptt=16, threads=1,
    )  # fmt: skip
    return charrnn.load(result.run_dir)


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory: pytest.TempPathFactory, shakespeare_head: str) -> charrnn.LanguageModelRun:
    return _train(tmp_path_factory, shakespeare_head[:3000], "lstm", 2)


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory: pytest.TempPathFactory, shakespeare_head: str) -> charrnn.LanguageModelRun:
    return _train(tmp_path_factory, shakespeare_head[:3000], "gru", 2)


@pytest.mark.parametrize("which", ["lstm_run", "gru_run"])
def test_activations_match_the_models_own_outputs_and_final_state(
    which: str, request: pytest.FixtureRequest
) -> None:
    run = request.getfixturevalue(which)
    acts = collect_activations(run.model, run.tokenizer, TEXT)
    ids = [EOS_ID] + run.tokenizer.encode(TEXT)
    with torch.inference_mode():
        out, state = run.model.core(torch.tensor([ids]))  # one fused pass over the whole text
    n = len(ids) - 1
    assert acts.hidden.shape == (2, n, 12) and acts.token_ids == ids[1:]
    torch.testing.assert_close(acts.hidden[-1], out[0, 1:], atol=1e-5, rtol=1e-5)  # top layer = nn outputs
    final = state[0] if isinstance(state, tuple) else state  # (layers, 1, hidden): every layer's last h
    torch.testing.assert_close(acts.hidden[:, -1], final[:, 0], atol=1e-5, rtol=1e-5)
    if which == "lstm_run":
        torch.testing.assert_close(acts.cell[:, -1], state[1][:, 0], atol=1e-5, rtol=1e-5)
        assert not torch.equal(acts.cell, acts.hidden)
    else:
        assert acts.cell is None
        with pytest.raises(CharRNNError, match="Only an LSTM"):
            acts.states("cell")
    assert "".join(acts.tokens) == TEXT
    assert collect_activations(run.model, run.tokenizer, "a€b").tokens == ["a", "€", "b"]  # € is unknown


def test_text_pieces_keep_the_texts_own_characters() -> None:
    from charrnn.core.config import TokenizerConfig
    from charrnn.core.tokenizers import build_tokenizer
    from charrnn.lm.activations import text_pieces

    words = build_tokenizer("the king says hello\n", TokenizerConfig(level="word"))
    text = 'The  king "(says)" zork.\nhello'
    ids = words.encode(text)
    pieces = text_pieces(words, text, ids)
    assert pieces == ["The", "  king", ' "', "(", "says", ")", '"', " zork", ".", "\n", "hello"]
    assert len(pieces) == len(ids) and words.decode(ids).count("<unk>") == 7  # unknown units keep their text
    assert pattern_signal(pieces, "brackets") == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]
    lower = build_tokenizer("abc\n", TokenizerConfig(level="char", lowercase=True))
    assert text_pieces(lower, "AbC", lower.encode("AbC")) == ["A", "b", "C"]


def test_pattern_signals_follow_the_text() -> None:
    pieces = list('a "b (c)" d\nef')
    assert pattern_signal(pieces, "quotes") == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert pattern_signal(pieces, "brackets") == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert pattern_signal(pieces, "line_position") == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2]
    assert pattern_signal(pieces, "after_space") == [0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0]
    with pytest.raises(CharRNNError, match="Unknown pattern"):
        pattern_signal(pieces, "vowels")


def test_correlations_are_pearson_r_and_find_units_ranks_by_magnitude(lstm_run: charrnn.LanguageModelRun) -> None:
    signal = [0.0, 1.0, 0.0, 1.0, 1.0]
    states = torch.tensor(
        [[[1.0, 5.0, -2.0], [2.0, 5.0, 3.0], [1.0, 5.0, -2.0], [2.0, 5.0, 3.0], [2.0, 5.0, 2.0]]]
    )
    r = correlations(states, signal)
    assert r[0, 0].item() == pytest.approx(1.0)
    assert r[0, 1].item() == 0.0  # a constant unit
    expected = torch.corrcoef(torch.stack([states[0, :, 2], torch.tensor(signal)]))[0, 1]
    assert r[0, 2].item() == pytest.approx(expected.item(), abs=1e-6)

    acts = collect_activations(lstm_run.model, lstm_run.tokenizer, TEXT)
    found = find_units(acts, "quotes", top=5)
    assert len(found) == 5 and [abs(m.correlation) for m in found] == sorted(
        (abs(m.correlation) for m in found), reverse=True
    )
    best = found[0]
    states = acts.states(best.state)[best.layer, :, best.unit]
    direct = torch.corrcoef(torch.stack([states.double(), torch.tensor(pattern_signal(acts.tokens, "quotes"))]))[
        0, 1
    ]
    assert best.correlation == pytest.approx(direct.item(), abs=1e-6)
    with pytest.raises(CharRNNError, match="never changes"):
        find_units(collect_activations(lstm_run.model, lstm_run.tokenizer, "abc"), "brackets")


def test_alternatives_reuse_the_scorer_and_are_the_models_top_k(lstm_run: charrnn.LanguageModelRun) -> None:
    sentences = ["To be, or not to be.", "Hi"]
    scored = score_with_alternatives(lstm_run.model, lstm_run.tokenizer, sentences, k=5)
    reference = lstm_run.score(sentences)
    for got, want, sentence in zip(scored, reference, sentences, strict=True):
        assert got.score.token_logprobs == pytest.approx(want.token_logprobs, abs=1e-6)
        assert got.score.logprob == pytest.approx(want.logprob, abs=1e-5)
        ids = [EOS_ID] + want.token_ids[:-1]
        with torch.inference_mode():
            hidden, _ = lstm_run.model(torch.tensor([ids]))
            log_probs = lstm_run.model.log_probs(hidden)[0]  # (positions, vocab)
        assert len(got.alternatives) == len(want.token_ids)
        for pos, row in enumerate(got.alternatives):
            assert [a.token_id for a in row] == log_probs[pos].topk(5).indices.tolist()
            assert [a.logprob for a in row] == pytest.approx(log_probs[pos].topk(5).values.tolist(), abs=1e-5)
            assert row[0].logprob >= got.score.token_logprobs[pos] - 1e-6
        assert got.to_dict()["alternatives"][0][0]["token"] == got.alternatives[0][0].token
        assert sentence == got.score.sentence
