"""The model a lesson trains: `RecurrentCore` (input symbols, plus the adding problem's value) and a linear read-out.

    e_j = [E[id_j], X_j]  (X_j only for the adding problem),   h^l_j = cell(h^{l-1}_j, h^l_{j-1}),   o_j = V h^L_j + c

The adding problem reads its prediction ŷ = o_T (one output) from the last step; the copy task reads a
class distribution softmax(o_j) at every step. An LSTM starts with its forget-gate bias at 1, so that
c_j = f_j ⊙ c_{j−1} + i_j ⊙ g_j keeps its content by default (Gers et al. 2000).
"""

from __future__ import annotations

import torch
from torch import nn

from charrnn.core.recurrent import RecurrentCore
from charrnn.lessons.config import LessonModelConfig
from charrnn.lessons.tasks import PROBLEMS, Batch


class LessonModel(nn.Module):
    """RecurrentCore -> linear read-out, for one of the lesson tasks (`charrnn.lessons.tasks.PROBLEMS`)."""

    def __init__(self, config: LessonModelConfig, task: str) -> None:
        super().__init__()
        config.validate()
        self.config, self.problem = config, PROBLEMS[task]
        self.core = RecurrentCore(
            self.problem.vocab,
            config.embed,
            config.hidden,
            config.layers,
            config.cell,
            extra_input=self.problem.extra_input,
            forget_bias=1.0,
        )
        self.head = nn.Linear(config.hidden, self.problem.outputs)

    def forward(self, batch: Batch) -> torch.Tensor:
        """The task's predictions for `batch`: ŷ (batch,) for the adding problem, logits (batch, steps, classes) for copy."""
        out, _ = self.core(batch.ids, extra=batch.values)  # (batch, steps, hidden)
        return self.problem.predictions(self.head(out))
