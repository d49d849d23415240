"""A trained lesson run: its learning curve against the no-memory baseline, and whether it solved the task.

The verdict, from the evaluations in metrics.jsonl (validation loss L and the share s of held-out
sequences solved, `charrnn.lessons.tasks`), with B the task's no-memory baseline:

    solved                    s ≥ 95% at some evaluation (the first such step is "steps to solve")
    stuck at the baseline     otherwise, when the best L is still above 0.9 B
    below the baseline        otherwise: it learned something a memoryless model cannot, not enough yet
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from charrnn.core import rundir
from charrnn.core.errors import CharRNNError
from charrnn.core.loaded_run import LoadedRun
from charrnn.lessons.config import LessonRunConfig
from charrnn.lessons.model import LessonModel
from charrnn.lessons.tasks import PROBLEMS, SOLVED_SHARE, step_generator

STUCK = 0.9  # best loss above this fraction of the baseline: stuck at the baseline
SOLVED, STUCK_AT_BASELINE, BELOW_BASELINE = "solved", "stuck at the baseline", "below the baseline, not solved"


@dataclass
class Evaluation:
    """One evaluation of a lesson run."""

    step: int
    loss: float  # validation loss (squared error, or nats per step)
    solved: float | None  # share of the held-out sequences solved


@dataclass
class LessonReport:
    """What a lesson run achieved against the no-memory baseline."""

    task: str
    cell: str
    length: int
    baseline: float  # the no-memory loss
    curve: list[Evaluation]
    solved_at: int | None  # the first step at which the held-out share solved reached 95%
    verdict: str  # "solved", "stuck at the baseline" or "below the baseline, not solved"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verdict(curve: list[Evaluation], baseline: float) -> tuple[str, int | None]:
    """(verdict, step solved at) of a learning curve (see the module docstring)."""
    solved_at = next((e.step for e in curve if e.solved is not None and e.solved >= SOLVED_SHARE), None)
    if solved_at is not None:
        return SOLVED, solved_at
    finite = [e.loss for e in curve if e.loss == e.loss]
    if not finite or min(finite) > STUCK * baseline:
        return STUCK_AT_BASELINE, None
    return BELOW_BASELINE, None


def lesson_report(run_dir: str | Path) -> LessonReport:
    """The learning curve, baseline and verdict of the lesson run in `run_dir`, from its files."""
    config = rundir.read_run_config(Path(run_dir), LessonRunConfig, "lesson")
    lesson = config.lesson
    curve = [
        Evaluation(int(r["step"]), float(r["val_loss"]), r.get("solved"))
        for r in rundir.read_metrics(Path(run_dir))
        if isinstance(r.get("val_loss"), int | float) and isinstance(r.get("step"), int)
    ]
    baseline = PROBLEMS[lesson.task].baseline(lesson.length)
    result, solved_at = verdict(curve, baseline)
    return LessonReport(lesson.task, config.model.cell, lesson.length, baseline, curve, solved_at, result)


class LessonRun(LoadedRun):
    """A lesson run loaded from its directory (`charrnn.load`)."""

    kind = "lesson"
    config_class = LessonRunConfig

    def __init__(self, run_dir: Path, config: LessonRunConfig, model: LessonModel, note: str | None) -> None:
        self.run_dir, self.config, self.model, self.note = run_dir, config, model, note

    @classmethod
    def read_tokenizers(cls, run_dir: Path, config: LessonRunConfig) -> tuple:
        return ()  # sequences of ids, no text

    @classmethod
    def build_model(cls, config: LessonRunConfig) -> LessonModel:
        return LessonModel(config.model, config.lesson.task)

    def evaluate(self, sequences: int | None = None, seed: int = 0) -> dict[str, float]:
        """Loss and share solved on the run's held-out sequences, or on `sequences` new ones drawn with `seed`."""
        from charrnn.lessons.training import evaluate_batch, validation_batch

        lesson = self.config.lesson
        if sequences is None:
            batch = validation_batch(self.config)
        elif sequences < 1:
            raise CharRNNError(f"Give at least one sequence to evaluate, got {sequences}.")
        else:
            batch = PROBLEMS[lesson.task].batch(step_generator(seed, -1), sequences, lesson.length)
        device = next(self.model.parameters()).device
        with torch.no_grad():
            loss, solved = evaluate_batch(self.model, batch.to(device))
        return {"loss": loss, "solved": solved, "baseline": PROBLEMS[lesson.task].baseline(lesson.length)}

    def report(self) -> LessonReport:
        """The run's learning curve against the baseline, and its verdict (`lesson_report`)."""
        return lesson_report(self.run_dir)
