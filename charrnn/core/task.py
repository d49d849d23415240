"""The model-specific half of training, as the training loop sees it: a `Task`.

A kind's recipe (`charrnn.core.engine.Recipe`) builds one; `charrnn.core.training_loop` drives it.
"""

from __future__ import annotations

from typing import Protocol

import torch

from charrnn.core.state import TrainState


class Task(Protocol):
    """The model-specific half of training; `run_training_loop` does the rest."""

    model: torch.nn.Module
    batches_per_epoch: int

    def start_epoch(self) -> None:
        """Called before the first batch of an epoch (not when resuming in the middle of one)."""

    def step_loss(self, state: TrainState) -> tuple[torch.Tensor, int]:
        """Loss of batch `state.chunk` of epoch `state.epoch`, and how many target tokens it has."""

    def end_step(self, finite: bool) -> None:
        """Called after every step; `finite` is False when the step was skipped."""

    def evaluate(self) -> float:
        """Mean validation loss per token."""

    def carried_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors a resumed run must start the next batch from (saved as task.* in the resume file)."""

    def restore_carried(self, tensors: dict[str, torch.Tensor]) -> None:
        """Take back what `carried_tensors` returned, on resume."""

    # Optional: `evaluation_details() -> dict`, figures added to each evaluation's metrics record after
    # `evaluate` (a lesson's share of held-out sequences solved); `stop_reason() -> str | None`, a rule of
    # the task's own, checked before every step, that ends training when it returns a reason (a lesson
    # stops once solved). It must answer the same on every rank.
