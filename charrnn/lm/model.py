"""The language model: `RecurrentCore` -> dropout -> softmax over the vocabulary (full or adaptive).

P(x_{t+1} = v | x_1..x_t) = softmax(W h_t + b)_v, where h_t is the top layer's output of the
recurrent core after reading x_1..x_t. The adaptive softmax (Grave et al. 2017) factors the same
distribution into a frequent-token head and rarer-token clusters; its log-probabilities are exact.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.core.recurrent import State, core_and_dropout
from charrnn.core.special_tokens import PAD_ID
from charrnn.lm.config import ModelConfig


def default_adaptive_cutoffs(vocab_size: int) -> list[int]:
    """Cluster boundaries for the adaptive softmax: about the top 6% and 30% of ids by frequency."""
    first = max(min(int(vocab_size * 0.06), 4000), 2)
    second = max(min(int(vocab_size * 0.3), 20000), first + 1)
    return [c for c in (first, second) if c < vocab_size - 1] or [max(vocab_size // 2, 1)]


def _fp32(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast off: the adaptive softmax runs in fp32 under bf16 training. Under CPU autocast its
    tail clusters' log-softmax would stay bf16 and could not be written into its fp32 output."""
    if tensor.device.type not in ("cpu", "cuda"):  # charrnn autocasts only these
        return contextlib.nullcontext()
    return torch.autocast(device_type=tensor.device.type, enabled=False)


class LanguageModel(nn.Module):
    """RecurrentCore -> dropout -> softmax over the vocabulary (full or adaptive)."""

    def __init__(self, config: ModelConfig, extra_input: int = 0) -> None:
        """`extra_input`: the width of a vector joined to every step's input (a conditional model's label)."""
        super().__init__()
        config.validate()
        self.config = config
        # PyTorch's default LSTM init and a uniform(-0.1, 0.1) output layer with zero bias, as in
        # pytorch/examples: on Tiny Shakespeare a forget-gate bias of 1 and nn.Linear's default init
        # learned markedly slower early on (val 2.46 vs 2.16 nats/char after 124 steps, 2x256).
        self.core, self.dropout = core_and_dropout(config, extra_input=extra_input, forget_bias=None)
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
            with _fp32(hidden):
                flat = self.head.log_prob(hidden.reshape(-1, hidden.shape[-1]).float())
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
            with _fp32(flat_hidden):
                return self.head(flat_hidden.float(), flat_targets).loss
        logits = self.head(flat_hidden)
        return F.cross_entropy(logits.float(), flat_targets, ignore_index=PAD_ID)

    def target_log_probs(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log P(target) at every position, (batch, time)."""
        return self.log_probs(hidden).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
