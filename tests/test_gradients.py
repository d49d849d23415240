"""Gradient flow ‖∂L_t/∂h_{t−k}‖ (charrnn.lessons.gradients) against a step-by-step reference with torch.autograd.grad."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from charrnn.core.errors import CharRNNError
from charrnn.lessons.cells import matched_hidden, parameter_count
from charrnn.lessons.gradients import gradient_flow, memory_horizon, row_gradient_norms, unrolled_states
from charrnn.lm.config import ModelConfig
from charrnn.lm.model import LanguageModel
from tests.support import run_cli, tiny_text

CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}


def tiny_model(cell: str, seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    model = LanguageModel(ModelConfig(vocab_size=9, cell=cell, embed=5, hidden=6, layers=2, dropout=0.3))
    with torch.no_grad():  # larger recurrent weights: gradients that neither vanish at once nor all look alike
        for name, param in model.core.rnn.named_parameters():
            if name.startswith("weight_hh"):
                param.mul_(2.0)
    return model.eval()


def reference_cells(model: LanguageModel) -> list[nn.Module]:
    """One PyTorch cell module per layer, holding that layer's weights."""
    rnn, cells = model.core.rnn, []
    for layer in range(rnn.num_layers):
        extra = {"nonlinearity": "tanh"} if model.config.cell == "rnn" else {}
        cell = CELLS[model.config.cell](
            rnn.input_size if layer == 0 else rnn.hidden_size, rnn.hidden_size, **extra
        )
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).data.copy_(getattr(rnn, f"{name}_l{layer}"))
        cells.append(cell)
    return cells


def output_gate(cell: nn.LSTMCell, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """o = σ(W_o x + b_o + U_o h + b'_o), the fourth block of PyTorch's LSTM weights."""
    size = cell.hidden_size
    block = slice(3 * size, 4 * size)
    return torch.sigmoid(
        x @ cell.weight_ih[block].T + cell.bias_ih[block] + h @ cell.weight_hh[block].T + cell.bias_hh[block]
    )


def reference_norm(model: LanguageModel, row: torch.Tensor, layer: int, k: int, which: str) -> float:
    """‖∂L_t/∂h^layer_{t−k}‖ (or c) for one row, by an explicit loop over steps from a zero state.

    The state of `layer` at step t−k is replaced by a fresh leaf with the same value; every later step
    and the layer above read that leaf, so torch.autograd.grad of L_t with respect to it is the derivative
    (for the LSTM's cell c, the same step's h is recomputed from the leaf: h = o ⊙ tanh(c)).
    """
    cells, lstm = reference_cells(model), model.config.cell == "lstm"
    steps = len(row) - 1
    states = [(torch.zeros(1, 6), torch.zeros(1, 6)) for _ in cells]
    leaf = None
    for j in range(steps):
        x = model.core.embedding(row[j : j + 1])
        for index, cell in enumerate(cells):
            h, c = states[index]
            if lstm:
                h, c = cell(x, (h, c))
            else:
                h = cell(x, h)
            if index == layer and j == steps - 1 - k:
                if which == "hidden":
                    h = leaf = h.detach().requires_grad_()
                else:  # the cell feeds this step's h = o ⊙ tanh(c) too: recompute h from the leaf
                    c = leaf = c.detach().requires_grad_()
                    h = output_gate(cell, x, states[index][0]) * torch.tanh(c)
            states[index] = (h, c)
            x = h
    loss = -torch.log_softmax(model.head(x), dim=-1)[0, row[-1]]
    (grad,) = torch.autograd.grad(loss, leaf)
    return float(grad.norm())


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_gradient_norms_equal_a_step_by_step_reference(cell: str) -> None:
    model = tiny_model(cell)
    torch.manual_seed(1)
    rows = torch.randint(3, 9, (3, 4 + 6 + 2))  # 3 positions: warm-up 4, horizon 6, target
    hidden, cell_norms = row_gradient_norms(model, rows, warmup=4)
    assert hidden.shape == (2, 3, 7)
    assert (cell_norms is not None) == (cell == "lstm")
    checked = []
    for which, norms in (("hidden", hidden), ("cell", cell_norms)):
        if norms is None:
            continue
        for b in range(3):
            for layer in range(2):
                for k in range(7):
                    want = reference_norm(model, rows[b], layer, k, which)
                    assert float(norms[layer, b, k]) == pytest.approx(want, rel=1e-5, abs=1e-9), (
                        which,
                        b,
                        layer,
                        k,
                    )
                    checked.append(want)
    assert min(checked) > 0 and max(checked) / min(checked) > 2  # the values differ: the check can fail


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_unrolled_cells_reproduce_the_fused_layers(cell: str) -> None:
    model = tiny_model(cell)
    ids = torch.randint(3, 9, (2, 7))
    with torch.no_grad():
        fused, _ = model.core(ids)
        hidden, _ = unrolled_states(model, ids)
    torch.testing.assert_close(torch.stack(hidden[-1], dim=1), fused, rtol=1e-5, atol=1e-6)


def test_gradient_flow_averages_rows_and_finds_the_horizon() -> None:
    model = tiny_model("lstm")
    ids = torch.randint(3, 9, (60,))
    flow = gradient_flow(model, ids.numpy(), horizon=10, positions=3, warmup=3, batch=2)
    starts = [0, 22, 45]  # three windows of 3 + 10 + 2 tokens spread evenly over 60
    rows = torch.stack([ids[s : s + 15] for s in starts])
    hidden, cell = row_gradient_norms(model, rows, warmup=3)
    assert flow.positions == 3 and not model.training
    torch.testing.assert_close(torch.tensor(flow.hidden), hidden.double().mean(dim=1).float(), rtol=1e-6, atol=0)
    torch.testing.assert_close(torch.tensor(flow.cell_state), cell.double().mean(dim=1).float(), rtol=1e-6, atol=0)
    assert flow.memory_horizons == [memory_horizon(curve) for curve in flow.hidden]
    assert memory_horizon([1.0, 0.5, 0.02, 0.009, 0.5]) == 3
    assert memory_horizon([1.0, 0.5, 0.02]) is None


def test_a_text_shorter_than_the_horizon_is_refused() -> None:
    with pytest.raises(CharRNNError, match="--horizon 50 needs at least 52"):
        gradient_flow(tiny_model("gru"), list(range(3, 9)) * 5, horizon=50)


def test_matched_hidden_gives_about_the_same_parameter_count() -> None:
    def build(cell: str, hidden: int) -> LanguageModel:
        return LanguageModel(ModelConfig(vocab_size=65, cell=cell, embed=16, hidden=hidden, layers=2))

    target = parameter_count(lambda: build("lstm", 64))
    for cell, gates in (("gru", 3), ("rnn", 1)):
        hidden = matched_hidden(lambda h, cell=cell: build(cell, h), target)
        counts = [parameter_count(lambda h=h, cell=cell: build(cell, h)) for h in (hidden - 1, hidden, hidden + 1)]
        assert abs(counts[1] - target) <= min(abs(counts[0] - target), abs(counts[2] - target))
        assert hidden > 64 and abs(counts[1] - target) / target < 0.05, (cell, gates)


def test_gradients_command_measures_a_run(trained_run: Path, tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text(tiny_text(400), encoding="utf-8")
    flags = ["--horizon", "12", "--positions", "3", "--warmup", "5", "--threads", "1"]
    runs = {}
    for name, extra in (("validation", []), ("text", [str(text)]), ("untrained", [str(text), "--untrained"])):
        result = run_cli(["gradients", str(trained_run), *extra, *flags, "--json"])
        assert result.code == 0, result.stderr
        (flow,) = json.loads(result.stdout)
        assert flow["cell"] == "lstm" and flow["positions"] == 3 and len(flow["hidden"]) == 2
        assert len(flow["hidden"][0]) == 13 and len(flow["cell_state"][1]) == 13
        assert flow["memory_horizons"] == [memory_horizon(curve) for curve in flow["hidden"]]
        runs[name] = flow["hidden"]
    assert runs["text"] != runs["untrained"] and runs["text"] != runs["validation"]
    shown = run_cli(["gradients", str(trained_run), str(text), *flags])
    assert shown.code == 0 and "memory horizon" in shown.stdout and "▁" in shown.stdout


def test_gradients_command_errors_are_one_line(trained_run: Path) -> None:
    for args, message in (
        (["gradients"], "Give a RUN directory"),
        (["gradients", str(trained_run), "--horizon", "0"], "--horizon must be at least 1"),
        (["gradients", str(trained_run), "--cells", "lstm,tree"], "--cells takes"),
    ):
        result = run_cli(args)
        assert result.code == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cells_are_trained_at_one_parameter_count_and_compared(trained_run: Path, tmp_path: Path) -> None:
    plot = tmp_path / "flows.png"
    result = run_cli(
        ["gradients", str(trained_run), "--cells", "rnn,gru", "--minutes", "0.005", "--out", str(tmp_path / "cells"),
         "--horizon", "8", "--positions", "2", "--threads", "1", "--json", "--plot", str(plot)]
    )  # fmt: skip
    assert result.code == 0, result.stderr
    flows = json.loads(result.stdout)
    assert [f["label"] for f in flows] == ["rnn", "gru"] and [f["cell"] for f in flows] == ["rnn", "gru"]
    counts = [
        json.loads(run_cli(["info", str(tmp_path / "cells" / c), "--json"]).stdout)["parameters"]
        for c in ("rnn", "gru")
    ]
    lstm = json.loads(run_cli(["info", str(trained_run), "--json"]).stdout)["parameters"]
    assert all(abs(c - lstm) / lstm < 0.05 for c in counts), (counts, lstm)
    assert plot.read_bytes()[:4] == b"\x89PNG"
