"""Attention: how the decoder looks back at the encoder's outputs.

For decoder query s_i (Bahdanau: the previous state s_{i-1}) and encoder outputs h_1..h_n:

    e_ij = a(s_i, h_j)            the score of source position j
    α_ij = softmax_j(e_ij)        over the real (non-pad) positions; padding gets exactly 0
    c_i  = Σ_j α_ij h_j           the context vector

with a() one of
    bahdanau       e_ij = v · tanh(W s_{i-1} + U h_j)     (additive; Bahdanau et al. 2015)
    luong-dot      e_ij = s_i · h_j / √d                   (multiplicative; Luong et al. 2015)
    luong-general  e_ij = s_i · (W h_j) / √d
The Luong scores are divided by √d (d = --hidden), as in scaled dot-product attention (Vaswani et al.
2017): a dot product of d terms grows like √d, and unscaled scores push the softmax to one-hot
weights early in training. Runs made before charrnn 0.3 keep their unscaled scores (`scaled_scores`).
The parts of a() that depend only on h_j (U h_j, W h_j) are computed once per sentence (`keys`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from charrnn.core.recurrent import State, select_state


@dataclass
class Memory:
    """What the decoder reads from the encoder, for a batch of source sentences."""

    outputs: torch.Tensor  # (batch, src_time, hidden) encoder outputs h_j
    keys: torch.Tensor | None  # (batch, src_time, key) the attention's precomputed transform of h_j
    mask: torch.Tensor  # (batch, src_time) True at real (non-pad) positions
    context: torch.Tensor  # (batch, hidden) the encoder's final top-layer state
    init_state: State  # the decoder's initial state, (layers, batch, hidden) each

    def select(self, rows: torch.Tensor) -> Memory:
        """The memory of the given rows (for beam search: repeat a sentence K times)."""
        return Memory(
            outputs=self.outputs.index_select(0, rows),
            keys=None if self.keys is None else self.keys.index_select(0, rows),
            mask=self.mask.index_select(0, rows),
            context=self.context.index_select(0, rows),
            init_state=select_state(self.init_state, rows),
        )


class Attention(nn.Module):
    """Scores e_ij between decoder queries and encoder outputs; the three score functions differ only here."""

    def __init__(self, score: str, hidden: int, attention_size: int, scaled: bool = True) -> None:
        super().__init__()
        self.score = score  # "bahdanau", "luong-general" or "luong-dot"
        self.scale = 1.0 / math.sqrt(hidden) if scaled and score != "bahdanau" else 1.0
        if score == "bahdanau":
            size = attention_size or hidden
            self.key_proj = nn.Linear(hidden, size)  # U h_j (+ bias)
            self.query_proj = nn.Linear(hidden, size, bias=False)  # W s_{i-1}
            self.v = nn.Linear(size, 1, bias=False)
        elif score == "luong-general":
            self.key_proj = nn.Linear(hidden, hidden, bias=False)  # W h_j, so s_i·(W h_j)

    def keys(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """The per-sentence part of the score, computed once: (batch, src_time, key) or None for dot."""
        return self.key_proj(outputs) if self.score in ("bahdanau", "luong-general") else None

    def forward(self, query: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        """query (batch, tgt_time, hidden) -> context (batch, tgt_time, hidden), weights (batch, tgt_time, src_time)."""
        if self.score == "bahdanau":
            # (batch, tgt, 1, size) + (batch, 1, src, size) -> (batch, tgt, src)
            energy = torch.tanh(self.query_proj(query).unsqueeze(2) + memory.keys.unsqueeze(1))
            scores = self.v(energy).squeeze(-1)
        else:
            keys = memory.outputs if memory.keys is None else memory.keys
            scores = torch.bmm(query, keys.transpose(1, 2))  # (batch, tgt, src)
            if self.scale != 1.0:
                scores = scores * self.scale
        scores = scores.masked_fill(~memory.mask.unsqueeze(1), -math.inf)
        weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)  # exactly 0 where masked
        return torch.bmm(weights, memory.outputs), weights
