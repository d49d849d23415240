"""The classifier (N vs 1): embedding -> `RecurrentCore` -> pooling -> dropout -> linear -> softmax over labels.

For a text x_1..x_T the core (the language model's, optionally bidirectional) gives an output
o_t = [→h_t; ←h_t] at every position and final states. Pooling makes one vector of them:

    last     v = [→h_T; ←h_1]                       the top layer's final state in each direction
    concat   v = [last; max_t o_t; (1/T) Σ_t o_t]    ULMFiT's concat pooling: the last state, and the
                                                     element-wise max and mean of the outputs over time

Padding never enters: the core reads packed sequences (each row stops at its own length) and max and
mean are taken over each row's real positions only. Then P(label | x) = softmax(W dropout(v) + b).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.core.recurrent import State, core_and_dropout
from charrnn.labelled.config import ClassifierConfig


def last_state(state: State, directions: int) -> torch.Tensor:
    """The top layer's final hidden state of each direction, side by side: (batch, directions * hidden)."""
    h = state[0] if isinstance(state, tuple) else state  # (layers * directions, batch, hidden)
    top = h[-directions:]  # (directions, batch, hidden): forward, then backward
    return top.transpose(0, 1).reshape(top.shape[1], -1)


def concat_pool(outputs: torch.Tensor, last: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[last; max over time; mean over time] of `outputs` (batch, time, width), over each row's first `lengths` steps."""
    steps = torch.arange(outputs.shape[1], device=outputs.device)
    real = (steps[None, :] < lengths.to(outputs.device)[:, None]).unsqueeze(-1)  # (batch, time, 1)
    outputs = outputs.float()  # sums of many bf16 values lose too much
    maximum = outputs.masked_fill(~real, float("-inf")).amax(dim=1)
    mean = outputs.sum(dim=1) / lengths.to(outputs.device, torch.float32)[:, None]  # padded outputs are zero
    return torch.cat([last.float(), maximum, mean], dim=-1)


class Classifier(nn.Module):
    """Embedding -> RecurrentCore -> pooling -> dropout -> linear: logits over the labels."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.core, self.dropout = core_and_dropout(config, bidirectional=config.bidirectional)
        width = self.core.output_size * (3 if config.pooling == "concat" else 1)
        self.head = nn.Linear(width, config.n_labels)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits (batch, labels) of the right-padded texts `ids` (batch, time) of the given `lengths`."""
        outputs, state = self.core(ids, lengths=lengths)  # a fresh zero state for every example
        pooled = last_state(state, self.core.directions)
        if self.config.pooling == "concat":
            pooled = concat_pool(outputs, pooled, lengths)
        return self.head(self.dropout(pooled))

    def prefix_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (time, labels) of every prefix x_1..x_t of one text `ids` (time,), in one pass of a one-way core.

        The top layer's output o_t is its state after x_t, so the prefix ending at t pools to o_t, or with
        concat pooling to [o_t; max_(s≤t) o_s; (1/t) Σ_(s≤t) o_s]: a running max and a running mean.
        A bidirectional core reads each prefix backwards from its own end, so it must reread every prefix.
        """
        if self.core.directions != 1:
            raise ValueError("prefix_logits needs a one-way core; a bidirectional one must reread every prefix")
        outputs, _ = self.core(ids[None, :])
        o = outputs[0].float()  # (time, hidden)
        pooled = o
        if self.config.pooling == "concat":
            steps = torch.arange(1, o.shape[0] + 1, device=o.device, dtype=torch.float32)[:, None]
            pooled = torch.cat([o, torch.cummax(o, dim=0).values, o.cumsum(dim=0) / steps], dim=-1)
        return self.head(self.dropout(pooled))

    @staticmethod
    def loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy −Σ w_y log P(y | x) / Σ w_y (the plain mean without weights)."""
        return F.cross_entropy(logits.float(), labels, weight=weights)
