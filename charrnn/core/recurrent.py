"""The recurrent core both models are built from: embedding -> dropout -> stacked LSTM/GRU/tanh-RNN.

For input ids x_1..x_T the core computes e_t = dropout(E[x_t]) and runs a stack of L fused
recurrent layers, h^l_t = cell(h^{l-1}_t, h^l_{t-1}) with h^0_t = e_t. The state of an LSTM is
(h, c), of a GRU or tanh RNN just h, each (layers * directions, batch, hidden). The language model
puts a softmax head on top; the seq2seq encoder and decoder are two more cores.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from charrnn.core.special_tokens import PAD_ID

RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

# The recurrent state: (h, c) for an LSTM, h for a GRU or tanh RNN; each (layers * dirs, batch, hidden).
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class RecurrentCore(nn.Module):
    """Embedding -> dropout -> stacked fused LSTM/GRU/tanh-RNN, batch first.

    Shared by the language model and by both sides of the seq2seq model. `extra_input`
    widens the recurrent input so a caller can concatenate a vector to every embedding
    (the seq2seq decoder feeds its attention context this way).
    """

    def __init__(
        self,
        vocab_size: int,
        embed: int,
        hidden: int,
        layers: int,
        cell: str = "lstm",
        dropout: float = 0.0,
        bidirectional: bool = False,
        extra_input: int = 0,
        forget_bias: float | None = 1.0,
    ) -> None:
        super().__init__()
        self.cell, self.hidden, self.layers = cell, hidden, layers
        self.forget_bias = forget_bias
        self.directions = 2 if bidirectional else 1
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        extra = {"nonlinearity": "tanh"} if cell == "rnn" else {}
        self.rnn = RNN_CLASSES[cell](
            embed + extra_input,
            hidden,
            layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
            bidirectional=bidirectional,
            **extra,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
            if self.cell == "lstm" and self.forget_bias is not None:  # remember by default early on
                for name, param in self.rnn.named_parameters():
                    if name.startswith("bias_ih"):
                        param[self.hidden : 2 * self.hidden].fill_(self.forget_bias)

    @property
    def output_size(self) -> int:
        return self.hidden * self.directions

    def forward(
        self,
        ids: torch.Tensor,
        state: State | None = None,
        lengths: torch.Tensor | None = None,
        extra: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        """Run the stack over `ids` (batch, time); returns outputs (batch, time, output_size) and state.

        With `lengths`, padded positions are skipped (packed sequence) so the final state is
        each row's state at its own last token, and padded outputs are zero.
        """
        x = self.dropout(self.embedding(ids))  # (batch, time, embed)
        if extra is not None:
            x = torch.cat([x, extra], dim=-1)
        if lengths is None:
            return self.rnn(x, state)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        return out, state

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        """An all-zero state for `batch` rows."""
        h = torch.zeros(self.layers * self.directions, batch, self.hidden, device=device)
        return (h, torch.zeros_like(h)) if self.cell == "lstm" else h


def core_and_dropout(config: Any, **options: Any) -> tuple[RecurrentCore, nn.Dropout]:
    """The recurrent core a model config describes (its vocab_size, embed, hidden, layers, cell and dropout),
    and the dropout before the model's head; `options` go to `RecurrentCore` (bidirectional, extra_input,
    forget_bias). Set as a model's `core` and `dropout`, in that order (their parameter names)."""
    core = RecurrentCore(
        config.vocab_size,
        config.embed,
        config.hidden,
        config.layers,
        config.cell,
        config.dropout,
        **options,
    )
    return core, nn.Dropout(config.dropout)


def detach_state(state: State) -> State:
    """Cut the autograd history of a state (truncated BPTT's chunk boundary)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


def state_tensors(state: State) -> list[torch.Tensor]:
    """The tensors of a state as a list (one for GRU/RNN, two for LSTM)."""
    return list(state) if isinstance(state, tuple) else [state]


def state_from_tensors(tensors: list[torch.Tensor]) -> State:
    """Inverse of `state_tensors`."""
    return (tensors[0], tensors[1]) if len(tensors) == 2 else tensors[0]


def select_state(state: State, rows: torch.Tensor) -> State:
    """Pick batch rows of a recurrent state (beam search: follow the surviving hypotheses)."""
    return state_from_tensors([t.index_select(1, rows) for t in state_tensors(state)])
