"""Gradient flow through time: ‖∂L_t/∂h_{t−k}‖, how much the loss at step t still depends on the state k steps back.

For one recurrent layer h_j = f(a_j), a_j = W x_j + U h_{j−1} + b, the chain rule gives

    ∂L_t/∂h_{t−k} = ∂L_t/∂h_t · J_t J_{t−1} ··· J_{t−k+1},      J_j = ∂h_j/∂h_{j−1} = diag(f′(a_j)) U

a product of k Jacobians. For the tanh RNN |f′| ≤ 1, so ‖∂L_t/∂h_{t−k}‖ ≤ ‖∂L_t/∂h_t‖ · ‖U‖^k: when U's
largest singular value is below 1 the gradient vanishes geometrically with k; where the product
grows (eigenvalues of U above 1, f′ near 1) it explodes, and clipping (g ← g·c/‖g‖ when ‖g‖ > c)
keeps the step bounded. The LSTM's cell c_j = f_j ⊙ c_{j−1} + i_j ⊙ g_j has ∂c_j/∂c_{j−1} = diag(f_j)
on its direct path: with forget gates near 1 that product stays near 1, and the gradient reaches
far back. The GRU's h_j = (1 − z_j) ⊙ n_j + z_j ⊙ h_{j−1} has the same direct path, diag(z_j).

How `gradient_flow` measures it, for one model and a token stream:

    row b:   x_{t−H−W} ... x_{t−H−1} | x_{t−H} ............ x_t | x_{t+1}
             '---- W warm-up tokens --''--- H + 1 tokens --------''target
             fused layers, no gradient   step-by-step cells,      L_t = −log P(x_{t+1} | x_≤t)
             (the state the model         every h^l_j (and c^l_j)
              would carry)                kept as a graph node

One row per position t (positions spread evenly over the text); one backward pass of Σ_b L_t with
respect to all kept nodes gives every row's ∂L_t/∂h^l_{t−k}, for every layer l and k = 0 … H at once
(rows do not interact: the model runs in eval mode, without dropout). The curve is the mean over the
rows of ‖∂L_t/∂h^l_{t−k}‖ (2-norm over the hidden units).

The derivative is taken with respect to the node h^l_{t−k}, every other node held at its value: it
counts every path out of h^l_{t−k} (into step t−k+1 of its layer and into the layer above). An LSTM's
cell c^l_{t−k} is a separate node, so the h curve does not include what flows back through
c^l_{t−k} directly; that gradient is reported beside it, ‖∂L_t/∂c^l_{t−k}‖ (`cell` curves).

The *memory horizon* of a curve is the first k at which it falls below 1% of its value at k = 0.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.recurrent import state_tensors
from charrnn.lessons.cells import layer_weights, matched_hidden, step
from charrnn.lm.model import LanguageModel

HORIZON_FRACTION = 0.01  # the memory horizon: where the gradient falls below 1% of its value at k = 0


@dataclass
class GradientFlow:
    """Mean ‖∂L_t/∂h^l_{t−k}‖ over positions t, for each layer l and distance k = 0 … horizon."""

    cell: str
    horizon: int
    positions: int  # how many positions t the means are over
    hidden: list[list[float]]  # [layer][k]
    cell_state: list[list[float]] | None = None  # LSTM: [layer][k] of ‖∂L_t/∂c^l_{t−k}‖; None otherwise
    label: str = ""  # what a table or plot calls it (the run, or the cell)
    memory_horizons: list[int | None] = field(init=False)  # per layer; None: above 1% up to `horizon`

    def __post_init__(self) -> None:
        self.memory_horizons = [memory_horizon(curve) for curve in self.hidden]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_horizon(curve: Sequence[float], fraction: float = HORIZON_FRACTION) -> int | None:
    """The first k with curve[k] < fraction · curve[0]; None when the curve never falls that low."""
    if not curve or not curve[0] > 0:
        return None
    return next((k for k, value in enumerate(curve) if value < fraction * curve[0]), None)


def unrolled_states(
    model: LanguageModel, ids: torch.Tensor, state: Any = None
) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]] | None]:
    """Every layer's h^l_j (and LSTM c^l_j) after each step of `ids` (batch, time), each a (batch, hidden) graph node.

    The same maths as the model's fused layers (`charrnn.lessons.cells`), one layer at a time: the
    input projection W x_j + b of a whole layer in one product, then the steps. Run in eval mode.
    """
    core = model.core
    x = core.embedding(ids)  # (batch, time, embed); dropout is off in eval mode
    batch = ids.shape[0]
    start = state_tensors(state if state is not None else core.initial_state(batch, ids.device))
    hidden, cells = [], []
    inputs = x
    for layer in range(core.layers):
        w, u, b, b_h = layer_weights(core.rnn, layer)
        projected = inputs @ w.T + b  # (batch, time, gates * hidden)
        h = start[0][layer]
        c = start[1][layer] if core.cell == "lstm" else None
        layer_h, layer_c = [], []
        for j in range(ids.shape[1]):
            h, c = step(core.cell, projected[:, j], h, c, u, b_h)
            layer_h.append(h)
            layer_c.append(c)
        hidden.append(layer_h)
        cells.append(layer_c)
        inputs = torch.stack(layer_h, dim=1)  # (batch, time, hidden): the next layer's input
    return hidden, (cells if core.cell == "lstm" else None)


def row_gradient_norms(
    model: LanguageModel, rows: torch.Tensor, warmup: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """‖∂L_t/∂h^l_{t−k}‖ of each row of `rows` (batch, warmup + H + 2): (layers, batch, H + 1), k along the last axis.

    Each row is W = `warmup` tokens, then x_{t−H} … x_t, then the target x_{t+1} (see the module
    docstring); the second result holds the LSTM's ‖∂L_t/∂c^l_{t−k}‖ the same way (None for GRU/RNN).
    """
    with torch.no_grad():
        state = model.core(rows[:, :warmup])[1] if warmup else None
    inputs, target = rows[:, warmup:-1], rows[:, -1:]
    hidden, cells = unrolled_states(model, inputs, state)
    top = model.dropout(hidden[-1][-1]).unsqueeze(1)  # h^L_t, (batch, 1, hidden)
    loss = -model.target_log_probs(top, target).sum()  # Σ_rows L_t
    nodes = [h for layer in hidden for h in layer] + [c for layer in cells or [] for c in layer]
    grads = torch.autograd.grad(loss, nodes, allow_unused=True)
    norms = torch.stack([g.norm(dim=-1) if g is not None else loss.new_zeros(len(rows)) for g in grads])
    layers, steps = len(hidden), len(hidden[0])
    norms = norms.view(-1, layers, steps, len(rows)).flip(2).transpose(2, 3)  # (h or c, layers, batch, k)
    return norms[0], (norms[1] if cells is not None else None)


def row_starts(n_tokens: int, span: int, positions: int) -> list[int]:
    """Where up to `positions` windows of `span` tokens start, spread evenly over a stream of `n_tokens`."""
    last = n_tokens - span
    if last < 0:
        raise CharRNNError(f"The text has {n_tokens:,} tokens, too few for windows of {span:,}.")
    return sorted({int(round(v)) for v in np.linspace(0, last, num=max(1, positions))})


def gradient_flow(
    model: LanguageModel,
    ids: Sequence[int] | np.ndarray,
    *,
    horizon: int = 200,
    positions: int = 32,
    warmup: int = 50,
    batch: int = 16,
    label: str = "",
) -> GradientFlow:
    """Mean ‖∂L_t/∂h^l_{t−k}‖ over up to `positions` positions t of the token stream `ids`, for k = 0 … `horizon`.

    Each position reads `warmup` tokens first (fewer when the text is short); `batch` positions
    go through one forward and backward pass together.
    """
    if horizon < 1:
        raise CharRNNError(f"--horizon must be at least 1, got {horizon}.")
    if positions < 1:
        raise CharRNNError(f"--positions must be at least 1, got {positions}.")
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < horizon + 2:
        raise CharRNNError(
            f"The text has {len(ids):,} tokens; --horizon {horizon} needs at least {horizon + 2:,}: "
            "give a longer text or a smaller --horizon."
        )
    warmup = max(0, min(warmup, len(ids) - horizon - 2))
    span = warmup + horizon + 2
    starts = row_starts(len(ids), span, positions)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    hidden_sum: torch.Tensor | None = None
    cell_sum: torch.Tensor | None = None
    try:
        for first in range(0, len(starts), batch):
            chunk = starts[first : first + batch]
            rows = torch.from_numpy(np.stack([ids[s : s + span] for s in chunk])).to(device)
            h_norms, c_norms = row_gradient_norms(model, rows, warmup)
            h_total = h_norms.double().sum(dim=1).cpu()  # (layers, k)
            hidden_sum = h_total if hidden_sum is None else hidden_sum + h_total
            if c_norms is not None:
                c_total = c_norms.double().sum(dim=1).cpu()
                cell_sum = c_total if cell_sum is None else cell_sum + c_total
    finally:
        model.train(was_training)
    assert hidden_sum is not None
    count = len(starts)
    return GradientFlow(
        cell=model.config.cell,
        horizon=horizon,
        positions=count,
        hidden=(hidden_sum / count).tolist(),
        cell_state=None if cell_sum is None else (cell_sum / count).tolist(),
        label=label,
    )


def loaded_run_flow(
    run: Any,
    text: str | None = None,
    *,
    horizon: int = 200,
    positions: int = 32,
    warmup: int = 50,
    untrained: bool = False,
) -> GradientFlow:
    """`run_gradient_flow` of a language model already loaded (`charrnn.load`)."""
    model = run.model
    if untrained:
        torch.manual_seed(run.config.training.seed)
        model = LanguageModel(copy.deepcopy(run.config.model)).to(next(model.parameters()).device)
    needed = (warmup + horizon + 2) * positions  # at most this many tokens are read
    if text is not None:
        ids = np.asarray(run.tokenizer.encode_corpus(text), dtype=np.int64)
    else:
        ids = _validation_ids(run, needed)
    label = Path(run.run_dir).name
    return gradient_flow(model, ids, horizon=horizon, positions=positions, warmup=warmup, label=label)


def _validation_ids(run: Any, limit: int) -> np.ndarray:
    """The start of a loaded run's validation stream, or a one-line error saying to give TEXT."""
    from charrnn.lm.training import validation_tokens

    try:
        return validation_tokens(run.config, run.tokenizer, limit)
    except CharRNNError as exc:
        raise CharRNNError(
            f"The run's validation text cannot be read ({str(exc).rstrip('.')}); give a TEXT file to measure on."
        ) from None


# -- which earlier tokens moved one prediction ------------------------------------------------------


@dataclass
class TokenInfluence:
    """How much each earlier token of a text moved the prediction of one token: ‖∂ log P(x_t)/∂ e(x_j)‖."""

    tokens: list[str]  # the stretch of the text each token covers
    position: int  # t, the token whose prediction is explained (0-based, in `tokens`)
    logprob: float  # log P(x_t | <eos>, x_<t)
    influence: list[float | None]  # for each token j: ‖∂ log P(x_t)/∂ e(x_j)‖ for j < t, None from t on

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def token_influence(model: LanguageModel, tokenizer: Any, text: str, position: int) -> TokenInfluence:
    """‖∂ log P(x_t | x_<t)/∂ e(x_j)‖ for every earlier token j of `text` (read after `<eos>`), t = `position`.

    e(x_j) is the embedding vector the model reads for token j: the gradient's norm there says how
    much a small change of that input would move the log-probability of token t. One forward pass
    over <eos>, x_0 … x_{t−1} and one backward pass (eval mode: no dropout).
    """
    from charrnn.core.special_tokens import EOS_ID
    from charrnn.lm.activations import text_pieces

    if not text:
        raise CharRNNError("Give some text to see which tokens the model remembers.")
    ids = tokenizer.encode(text)
    if not 0 <= position < len(ids):
        raise CharRNNError(f"position must be between 0 and {len(ids) - 1} (the text has {len(ids)} tokens).")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.enable_grad():
            inputs = torch.tensor([[EOS_ID, *ids[:position]]], device=device)  # (1, t + 1)
            embedded = model.core.embedding(inputs).detach().requires_grad_()  # (1, t + 1, embed)
            out, _ = model.core.rnn(embedded)
            logprob = model.log_probs(out[:, -1])[0, ids[position]]
            (grad,) = torch.autograd.grad(logprob, embedded)
    finally:
        model.train(was_training)
    norms = grad[0, 1:].norm(dim=-1).tolist()  # the tokens of the text before t (not the leading <eos>)
    return TokenInfluence(
        tokens=text_pieces(tokenizer, text, ids),
        position=position,
        logprob=float(logprob.detach()),
        influence=[*norms, *([None] * (len(ids) - position))],
    )


# -- the three cells side by side -------------------------------------------------------------------

SMALL_MODEL = {
    "embed": 64,
    "hidden": 128,
    "layers": 1,
}  # --cells without a RUN: the LSTM's size; the others match it


def cell_sizes(cells: Sequence[str], model: dict[str, Any], vocab_size: int) -> dict[str, int]:
    """The hidden size of each cell that gives about the parameter count of an LSTM of `model`'s shape."""
    from charrnn.lm.config import ModelConfig

    def build(cell: str, hidden: int) -> LanguageModel:
        return LanguageModel(ModelConfig(vocab_size=vocab_size, cell=cell, embed=model["embed"], hidden=hidden,
                                         layers=model["layers"], dropout=0.0))  # fmt: skip

    from charrnn.lessons.cells import parameter_count

    target = parameter_count(lambda: build("lstm", model["hidden"]))
    return {cell: matched_hidden(lambda h, cell=cell: build(cell, h), target) for cell in cells}
