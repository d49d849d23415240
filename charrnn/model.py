"""The recurrent core (embedding + stacked LSTM/GRU/RNN) and the language-model head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from charrnn.config import ModelConfig
from charrnn.tokenizers import PAD_ID

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


def default_adaptive_cutoffs(vocab_size: int) -> list[int]:
    """Cluster boundaries for the adaptive softmax: about the top 6% and 30% of ids by frequency."""
    first = max(min(int(vocab_size * 0.06), 4000), 2)
    second = max(min(int(vocab_size * 0.3), 20000), first + 1)
    return [c for c in (first, second) if c < vocab_size - 1] or [max(vocab_size // 2, 1)]


class LanguageModel(nn.Module):
    """RecurrentCore -> dropout -> softmax over the vocabulary (full or adaptive)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        # PyTorch's default LSTM init and a uniform(-0.1, 0.1) output layer with zero bias, as in
        # pytorch/examples: on Tiny Shakespeare a forget-gate bias of 1 and nn.Linear's default init
        # learned markedly slower early on (val 2.46 vs 2.16 nats/char after 124 steps, 2x256).
        self.core = RecurrentCore(
            config.vocab_size,
            config.embed,
            config.hidden,
            config.layers,
            config.cell,
            config.dropout,
            forget_bias=None,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head: nn.Linear | nn.AdaptiveLogSoftmaxWithLoss
        if config.softmax == "adaptive":
            cutoffs = config.adaptive_cutoffs or default_adaptive_cutoffs(config.vocab_size)
            config.adaptive_cutoffs = list(cutoffs)
            self.head = nn.AdaptiveLogSoftmaxWithLoss(config.hidden, config.vocab_size, cutoffs, div_value=4.0)
        else:
            self.head = nn.Linear(config.hidden, config.vocab_size)
            nn.init.uniform_(self.head.weight, -0.1, 0.1)
            nn.init.zeros_(self.head.bias)
            if config.tie_weights:
                self.head.weight = self.core.embedding.weight

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Hidden outputs (batch, time, hidden) after dropout, and the new state."""
        out, state = self.core(ids, state)
        return self.dropout(out), state

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        return self.core.initial_state(batch, device)

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """Exact log-probabilities over the vocabulary, (..., vocab), for any softmax kind."""
        if isinstance(self.head, nn.AdaptiveLogSoftmaxWithLoss):
            flat = self.head.log_prob(hidden.reshape(-1, hidden.shape[-1]))
            return flat.view(*hidden.shape[:-1], -1)
        return F.log_softmax(self.head(hidden).float(), dim=-1)

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of `targets` (batch, time), ignoring `<pad>` targets.

        The adaptive softmax computes it without the full softmax; the values are the same.
        """
        flat_hidden = hidden.reshape(-1, hidden.shape[-1])
        flat_targets = targets.reshape(-1)
        if isinstance(self.head, nn.AdaptiveLogSoftmaxWithLoss):
            keep = flat_targets != PAD_ID
            if not bool(keep.all()):
                flat_hidden, flat_targets = flat_hidden[keep], flat_targets[keep]
            return self.head(flat_hidden, flat_targets).loss
        logits = self.head(flat_hidden)
        return F.cross_entropy(logits.float(), flat_targets, ignore_index=PAD_ID)

    def target_log_probs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log P(target) at every position, (batch, time)."""
        return self.log_probs(hidden).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
