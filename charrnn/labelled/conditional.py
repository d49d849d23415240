"""The label-conditioned language model (1 vs N), its scorer, and the Bayes classifier it gives.

The language model of `charrnn.lm.model` whose every step also sees a learned label embedding
e_y = L[y]. By `label_as`:

    input   h^1_t = cell([E[x_t]; e_y], h^1_{t-1})     e_y joins the input at every step (as in
                                                      PyTorch's name-generation tutorial)
    state   h_0 = tanh(W_h e_y)  (LSTM: c_0 = W_c e_y)  e_y sets the initial state of every layer
                                                      (as in the PyTorch NLP book's surname generator)
    none    the plain model, the label ignored: the baseline the benchmark compares against

so P(x | y) = Π_t P(x_t | <eos>, x_<t, y) · P(<eos> | x, y). Every example is its own sequence and
starts from its own initial state. The Bayes classifier reads the same numbers the other way:

    P(y | x) = P(x | y) P(y) / Σ_y' P(x | y') P(y'),   P(y) = the label's share of the training examples.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from charrnn.core.recurrent import State
from charrnn.core.scoring import batched_target_log_probs, default_batch_tokens
from charrnn.labelled.config import ConditionalModelConfig
from charrnn.lm.model import LanguageModel


class ConditionalLanguageModel(LanguageModel):
    """A `LanguageModel` that also reads a label: as an input at every step, or as its initial state."""

    def __init__(self, config: ConditionalModelConfig) -> None:
        super().__init__(config, extra_input=config.label_embed if config.label_as == "input" else 0)
        self.config: ConditionalModelConfig = config
        if config.label_as != "none":
            self.label_embedding = nn.Embedding(config.n_labels, config.label_embed)
            nn.init.normal_(self.label_embedding.weight, std=0.1)
        if config.label_as == "state":
            copies = 2 if config.cell == "lstm" else 1  # (h, c) for an LSTM
            self.label_state = nn.Linear(config.label_embed, copies * config.layers * config.hidden)

    def labelled_state(self, labels: torch.Tensor) -> State:
        """The initial state from the labels (label_as "state"): h_0 = tanh(W_h e_y), c_0 = W_c e_y."""
        batch, config = labels.shape[0], self.config
        flat = self.label_state(self.label_embedding(labels))  # (batch, copies * layers * hidden)
        parts = flat.view(batch, -1, config.layers, config.hidden).permute(1, 2, 0, 3).contiguous()
        h = torch.tanh(parts[0])  # (layers, batch, hidden)
        return (h, parts[1]) if config.cell == "lstm" else h

    def forward(
        self, ids: torch.Tensor, state: State | None = None, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Hidden outputs (batch, time, hidden) after dropout, and the new state, for texts of the given labels (batch,).

        `state` continues a sequence already begun; without it each row starts from its label's initial state.
        """
        mode = self.config.label_as
        if mode != "none" and labels is None:
            raise ValueError("a conditional language model needs the labels of its rows")
        extra = None
        if mode == "input":
            extra = self.label_embedding(labels)[:, None, :].expand(
                -1, ids.shape[1], -1
            )  # (batch, time, label_embed)
        elif mode == "state" and state is None:
            state = self.labelled_state(labels)
        out, state = self.core(ids, state, extra=extra)
        return self.dropout(out), state


class WithLabels(nn.Module):
    """A conditional model with its rows' labels fixed: called as a plain language model (the samplers use it)."""

    def __init__(self, model: ConditionalLanguageModel, labels: torch.Tensor) -> None:
        super().__init__()
        self.model, self.labels = model, labels
        self.config = model.config

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        return self.model(ids, state, labels=self.labels)

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.log_probs(hidden)


@torch.inference_mode()
def score_with_labels(
    model: ConditionalLanguageModel,
    sequences: list[list[int]],
    labels: list[int],
    max_batch_tokens: int | None = None,
) -> list[list[float]]:
    """log P(x_t | <eos>, x_<t, y) of each token of each sequence (end them with `<eos>`) under its label y.

    The same padded batches as the language model's scorer (`charrnn.core.scoring`); each row starts
    from its own label's initial state, so a text's score does not depend on the rows beside it.
    """
    model.eval()
    device = next(model.parameters()).device

    def run_batch(rows: list[int], inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        row_labels = torch.tensor([labels[i] for i in rows], dtype=torch.long, device=device)
        hidden, _ = model(inputs.to(device), labels=row_labels)
        return model.target_log_probs(hidden, targets.to(device))

    budget = default_batch_tokens(model.config.vocab_size) if max_batch_tokens is None else max_batch_tokens
    return batched_target_log_probs(sequences, budget, run_batch)


def log_prior(counts: list[int]) -> list[float]:
    """log P(y) = log(n_y / Σ n): the labels' shares of the training examples."""
    total = sum(counts)
    return [math.log(n / total) if n else -math.inf for n in counts]


def label_posteriors(
    model: ConditionalLanguageModel, sequences: list[list[int]], counts: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P(y | x) (texts, labels), log P(x | y) (texts, labels)) by Bayes' rule with the prior of `counts`.

    Each text is scored once under every label: log P(x | y) + log P(y), normalised over y (log-sum-exp).
    """
    n_labels = len(counts)
    repeated = [ids for ids in sequences for _ in range(n_labels)]
    labels = [label for _ in sequences for label in range(n_labels)]
    per_token = score_with_labels(model, repeated, labels)
    likelihood = torch.tensor([sum(logps) for logps in per_token], dtype=torch.float64).view(-1, n_labels)
    joint = likelihood + torch.tensor(log_prior(counts), dtype=torch.float64)
    return torch.softmax(joint, dim=1), likelihood
