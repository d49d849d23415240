"""The three recurrent cells written out step by step, with the weights of PyTorch's fused layers.

`nn.LSTM`, `nn.GRU` and `nn.RNN` run a whole sequence in one fused call and hand back only the top
layer's outputs; to see (and differentiate with respect to) every layer's state at every step, the
same maths is written here for one step of one layer, with W = weight_ih_l{layer}, U =
weight_hh_l{layer}, b = bias_ih_l{layer}, b' = bias_hh_l{layer} (PyTorch's gate order):

    tanh RNN   h_t = tanh(W x_t + b + U h_{t-1} + b')
    GRU        r = σ(W_r x + b_r + U_r h + b'_r),  z = σ(W_z x + b_z + U_z h + b'_z)
               n = tanh(W_n x + b_n + r ⊙ (U_n h + b'_n)),   h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
    LSTM       i, f, g, o = σ, σ, tanh, σ of (W x + b + U h_{t-1} + b') split in four
               c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)

`step` takes the input projection W x_t + b already computed (for all t of a layer in one matrix
product); `matched_hidden` sizes a cell's layers so that models of different cells have about the
same number of parameters (an LSTM layer has four blocks of weights, a GRU three, a tanh RNN one).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from charrnn.core import memory
from charrnn.core.errors import CharRNNError

GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # blocks of weights per layer


def layer_weights(rnn: nn.RNNBase, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W, U, b, b') of one layer of a fused, unidirectional PyTorch recurrent stack."""
    if rnn.bidirectional or not rnn.bias or getattr(rnn, "proj_size", 0):
        raise CharRNNError("The step-by-step cells cover unidirectional layers with biases and no projection.")
    return tuple(getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))  # type: ignore[return-value]


def step(
    cell: str, projected: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None, u: torch.Tensor, b_h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step of one layer: (h_t, c_t) from W x_t + b (`projected`, (batch, gates * hidden)) and (h_{t-1}, c_{t-1})."""
    recurrent = h @ u.T + b_h  # U h_{t-1} + b'   (batch, gates * hidden)
    if cell == "rnn":
        return torch.tanh(projected + recurrent), None
    if cell == "gru":
        x_r, x_z, x_n = projected.chunk(3, dim=-1)
        h_r, h_z, h_n = recurrent.chunk(3, dim=-1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (1 - z) * n + z * h, None
    if cell == "lstm":
        assert c is not None
        i, f, g, o = (projected + recurrent).chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c_new), c_new
    raise CharRNNError(f"Unknown cell {cell!r}; choose one of: {', '.join(GATES)}.")


def parameter_count(build: Callable[[], nn.Module]) -> int:
    """Parameters of the model `build` makes, counted on the meta device (nothing is allocated)."""
    return sum(math.prod(shape) for shape in memory.model_shapes(build).values())


def matched_hidden(build: Callable[[int], nn.Module], parameters: int, most: int = 65_536) -> int:
    """The hidden size h whose model `build(h)` has the parameter count closest to `parameters`.

    The count grows with h (quadratically: gates x (h x input + h^2 + 2h) per layer), so a binary
    search over h finds the crossing; of the two sizes around it the closer one is returned.
    """

    def count(hidden: int) -> int:
        return parameter_count(lambda: build(hidden))

    low, high = 1, most
    while low < high:  # the smallest h with at least `parameters`
        middle = (low + high) // 2
        if count(middle) >= parameters:
            high = middle
        else:
            low = middle + 1
    if low > 1 and parameters - count(low - 1) < count(low) - parameters:
        return low - 1
    return low
