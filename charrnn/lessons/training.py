"""Training a lesson: the engine (`charrnn.core.engine`) with a task that makes its sequences up as it goes.

Each step is one batch of fresh sequences from `charrnn.lessons.tasks` (seeded by the step, so a resume
needs no carried tensors); each evaluation scores the same held-out sequences, recording their loss and
the share solved.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from charrnn.core import engine, rundir
from charrnn.core.state import Reporter, TrainState
from charrnn.lessons.config import LessonRunConfig, LessonTrainConfig
from charrnn.lessons.model import LessonModel
from charrnn.lessons.tasks import PROBLEMS, SOLVED_SHARE, Batch, step_generator, validation_generator

EVAL_ROWS = 500  # held-out sequences scored per forward pass


class LessonTask:
    """The engine's task for a lesson: a fresh batch per step; validation loss and the share solved."""

    def __init__(
        self, model: LessonModel, config: LessonRunConfig, validation: Batch, device: torch.device
    ) -> None:
        self.model, self.config, self.validation, self.device = model, config, validation, device
        self.cfg: LessonTrainConfig = config.training
        self.problem = PROBLEMS[config.lesson.task]
        self.batches_per_epoch = self.cfg.STEPS_PER_EPOCH
        self.last_solved: float | None = None

    def start_epoch(self) -> None:
        pass

    def step_loss(self, state: TrainState) -> tuple[torch.Tensor, int]:
        generator = step_generator(self.cfg.seed, state.step)
        batch = self.problem.batch(generator, self.cfg.batch_size, self.config.lesson.length).to(self.device)
        return self.problem.loss(self.model(batch), batch.targets), batch.ids.numel()

    def end_step(self, finite: bool) -> None:
        pass

    def evaluate(self) -> float:
        loss, self.last_solved = evaluate_batch(self.model, self.validation)
        return loss

    def evaluation_details(self) -> dict[str, Any]:
        """What the engine adds to the evaluation's metrics record: the share of held-out sequences solved."""
        return {"solved": self.last_solved}

    def stop_reason(self) -> str | None:
        """ "solved" once the last evaluation solved 95% of the held-out sequences (unless --keep-training)."""
        if self.cfg.stop_when_solved and self.last_solved is not None and self.last_solved >= SOLVED_SHARE:
            return "solved"
        return None

    def carried_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def restore_carried(self, tensors: dict[str, torch.Tensor]) -> None:
        pass


@torch.no_grad()
def evaluate_batch(model: LessonModel, batch: Batch) -> tuple[float, float]:
    """(mean loss, share solved) of `model` on the sequences of `batch`, scored `EVAL_ROWS` at a time."""
    was_training = model.training
    model.eval()
    total, solved, rows = 0.0, 0, len(batch.ids)
    for start in range(0, rows, EVAL_ROWS):
        part = batch.rows(start, min(start + EVAL_ROWS, rows))
        predictions = model(part)
        total += float(model.problem.loss(predictions, part.targets)) * len(part.ids)
        solved += int(model.problem.solved(predictions, part.targets).sum())
    model.train(was_training)
    return total / rows, solved / rows


def validation_batch(config: LessonRunConfig) -> Batch:
    """The held-out sequences of a lesson run: the same at every evaluation, and for `LessonRun.evaluate`."""
    lesson = config.lesson
    generator = validation_generator(config.training.seed)
    return PROBLEMS[lesson.task].batch(generator, lesson.eval_sequences, lesson.length)


class LessonRecipe:
    """Sets a lesson up for the training engine: no data files and no tokenizer, only the task."""

    kind = "lesson"

    def read_config(self, run_dir: Path) -> LessonRunConfig:
        return rundir.read_run_config(run_dir, LessonRunConfig, "lesson")

    def read_data(self, config: LessonRunConfig, reporter: Reporter) -> None:
        return None

    def build_tokenizers(self, config: LessonRunConfig, data: None) -> None:
        return None

    def read_tokenizers(self, run_dir: Path) -> None:
        return None

    def write_tokenizers(self, run_dir: Path, tokenizers: None) -> None:
        pass

    def tokenizer_hash(self, tokenizers: None) -> str:
        return ""  # no tokenizer: the fingerprint of none (`rundir.tokenizers_fingerprint()`)

    def prepare(
        self, config: LessonRunConfig, tokenizers: None, data: None, device: torch.device, reporter: Reporter
    ) -> engine.Prepared:
        lesson = config.lesson
        problem = PROBLEMS[lesson.task]
        model = LessonModel(config.model, lesson.task).to(device)
        task = LessonTask(model, config, validation_batch(config).to(device), device)
        data_hash = hashlib.sha256(repr((lesson.task, lesson.length, lesson.eval_sequences)).encode()).hexdigest()
        info = {
            "level": None,  # losses are the task's own (squared error, or nats per step): no bits/char
            "data": f"{problem.title}, T = {lesson.length} ({problem.steps(lesson.length)} steps a sequence), "
            f"fresh sequences every step, {lesson.eval_sequences:,} held out; "
            f"no-memory baseline {problem.baseline(lesson.length):.4f}",
        }
        return engine.Prepared(task, data_hash[:16], info)
