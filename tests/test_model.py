"""The recurrent core and the language-model head."""

from __future__ import annotations

import pytest
import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.recurrent import RecurrentCore
from charrnn.lm.config import ModelConfig
from charrnn.lm.model import LanguageModel


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_core_shapes_for_every_cell(cell: str) -> None:
    core = RecurrentCore(vocab_size=11, embed=5, hidden=7, layers=3, cell=cell)
    out, state = core(torch.randint(0, 11, (2, 9)))
    assert out.shape == (2, 9, 7)
    states = state if isinstance(state, tuple) else (state,)
    assert len(states) == (2 if cell == "lstm" else 1)
    assert all(s.shape == (3, 2, 7) for s in states)
    assert isinstance(core.rnn, {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell])


def test_packed_lengths_give_each_rows_own_final_state() -> None:
    torch.manual_seed(0)
    core = RecurrentCore(vocab_size=10, embed=4, hidden=6, layers=2, cell="gru").eval()
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    out, state = core(ids, lengths=torch.tensor([4, 2]))
    _, alone = core(ids[1:, :2])
    torch.testing.assert_close(state[:, 1], alone[:, 0])
    assert torch.all(out[1, 2:] == 0)


def test_tied_weights_share_one_parameter() -> None:
    model = LanguageModel(ModelConfig(vocab_size=20, embed=8, hidden=8, layers=1, tie_weights=True))
    assert model.head.weight is model.core.embedding.weight
    with pytest.raises(CharRNNError, match="--embed equal to --hidden"):
        LanguageModel(ModelConfig(vocab_size=20, embed=4, hidden=8, tie_weights=True))


@pytest.mark.parametrize("softmax", ["full", "adaptive"])
def test_log_probs_are_normalised_and_match_the_training_loss(softmax: str) -> None:
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=300, embed=8, hidden=16, layers=1, softmax=softmax)).eval()
    ids = torch.randint(3, 300, (3, 12))
    hidden, _ = model(ids[:, :-1])
    log_probs = model.log_probs(hidden)
    torch.testing.assert_close(log_probs.logsumexp(-1), torch.zeros(3, 11), atol=1e-5, rtol=0)
    nll = -model.target_log_probs(hidden, ids[:, 1:]).mean()
    torch.testing.assert_close(model.loss(hidden, ids[:, 1:]), nll, atol=1e-5, rtol=1e-5)


def test_padding_targets_are_ignored_by_the_loss() -> None:
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=30, embed=8, hidden=16, layers=1)).eval()
    hidden, _ = model(torch.randint(3, 30, (1, 6)))
    targets = torch.randint(3, 30, (1, 6))
    padded = targets.clone()
    padded[0, 4:] = 0
    torch.testing.assert_close(model.loss(hidden, padded), model.loss(hidden[:, :4], targets[:, :4]))
