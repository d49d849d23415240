"""The reference: the plain PyTorch language-model loop a user writes from pytorch/examples' word_language_model.

Embedding -> dropout -> nn.LSTM/GRU (time-major) -> dropout -> nn.Linear, plain cross-entropy over the
full vocabulary, `batchify` into parallel columns, `get_batch` for BPTT chunks, `repackage_hidden`
between chunks, AdamW and gradient clipping, `loss.item()` every step. Written for these benchmarks;
it is the baseline charrnn is measured against, not part of the library.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class RNNModel(nn.Module):
    """Encoder, recurrent stack and decoder, as in the PyTorch example."""

    def __init__(
        self, cell: str, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float = 0.2, tie: bool = False
    ) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, cell.upper())(ninp, nhid, nlayers, dropout=dropout if nlayers > 1 else 0.0)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie:
            self.decoder.weight = self.encoder.weight
        self.cell, self.nhid, self.nlayers = cell, nhid, nlayers
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, x: torch.Tensor, hidden):
        emb = self.drop(self.encoder(x))  # (time, batch, ninp)
        output, hidden = self.rnn(emb, hidden)
        return self.decoder(self.drop(output)), hidden  # (time, batch, ntoken)

    def init_hidden(self, bsz: int):
        h = torch.zeros(self.nlayers, bsz, self.nhid)
        return (h, h.clone()) if self.cell == "lstm" else h


def batchify(ids: torch.Tensor, bsz: int) -> torch.Tensor:
    """(time, batch) columns of the token stream, int64, as in the example."""
    nbatch = ids.size(0) // bsz
    return ids[: nbatch * bsz].long().view(bsz, -1).t().contiguous()


def get_batch(source: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)


def repackage_hidden(h):
    return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage_hidden(v) for v in h)


class ReferenceTrainer:
    """The example's `train()` loop, resumable step by step so benchmarks can time and interleave it."""

    def __init__(
        self,
        model: RNNModel,
        train_ids: torch.Tensor,
        batch_size: int,
        bptt: int,
        lr: float = 3e-3,
        clip: float = 1.0,
        weight_decay: float = 0.01,
    ) -> None:
        self.model, self.bptt, self.clip, self.batch_size = model, bptt, clip, batch_size
        self.data = batchify(train_ids, batch_size)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.hidden = model.init_hidden(batch_size)
        self.position = 0
        self.steps = 0
        self.tokens = 0
        self.total_loss = 0.0

    def step(self) -> float:
        """One BPTT chunk: forward, loss, backward, clip, AdamW; returns the loss."""
        self.model.train()
        if self.position >= len(self.data) - 1:
            self.position, self.hidden = 0, self.model.init_hidden(self.batch_size)
        data, targets = get_batch(self.data, self.position, self.bptt)
        self.hidden = repackage_hidden(self.hidden)
        self.optimizer.zero_grad()
        output, self.hidden = self.model(data, self.hidden)
        loss = F.cross_entropy(output.view(-1, output.size(-1)), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.position += self.bptt
        self.steps += 1
        self.tokens += targets.numel()
        value = loss.item()
        self.total_loss += value
        return value

    def run_for(self, seconds: float, should_pause: Callable[[], bool] = lambda: False) -> None:
        """Train until `seconds` of wall time have passed or `should_pause()` says so."""
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and not should_pause():
            self.step()


@torch.no_grad()
def evaluate(model: RNNModel, ids: torch.Tensor, batch_size: int, bptt: int) -> float:
    """Mean cross-entropy per token (nats) over `ids`, state carried across chunks."""
    model.eval()
    data = batchify(ids, batch_size)
    hidden = model.init_hidden(batch_size)
    total, count = 0.0, 0
    for i in range(0, data.size(0) - 1, bptt):
        x, y = get_batch(data, i, bptt)
        output, hidden = model(x, hidden)
        total += F.cross_entropy(output.view(-1, output.size(-1)), y, reduction="sum").item()
        count += y.numel()
    return total / max(count, 1)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))
