"""Configuration of a lesson run (`charrnn lesson adding|copy`): the task, the recurrent model, the training settings.

A lesson trains on sequences made up fresh for every step (`charrnn.lessons.tasks`), so it has no
data files: the task and its length T are the run's data. Its own defaults are set here: one layer
of 128 units, constant learning rate 1e-3 (Adam-style, no weight decay), fp32, and 1,000 steps to an
"epoch" (a number of fresh batches, for the progress display and --epochs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from charrnn.core.config import CELLS, RunConfigBase, TrainConfig, at_least, choice
from charrnn.core.errors import CharRNNError
from charrnn.core.options import option
from charrnn.core.version import FORMAT_VERSION, __version__

TASKS = ("adding", "copy")
MAX_LENGTH = 100_000


@dataclass
class LessonConfig:
    """Which long-range task, and how long its sequences are."""

    task: str = option(
        "adding", "adding (Hochreiter & Schmidhuber 1997) or copy (Arjovsky et al. 2016).", cli=False
    )
    length: int = option(
        100, "T: the length of an adding sequence, or the blanks between the copy task's symbols and their recall."
    )
    eval_sequences: int = option(1000, "Held-out sequences each evaluation scores (the same ones every time).")

    def validate(self) -> None:
        choice("lesson task", self.task, TASKS)
        at_least("length", self.length, 2)
        at_least("eval_sequences", self.eval_sequences, 1)
        if self.length > MAX_LENGTH:
            raise CharRNNError(f"--length must be at most {MAX_LENGTH:,}, got {self.length:,}.")
        if self.eval_sequences > 100_000:
            raise CharRNNError(f"--eval-sequences must be at most 100,000, got {self.eval_sequences:,}.")


@dataclass
class LessonModelConfig:
    """The recurrent model a lesson trains: embedding of the input symbols, a stack of cells, a linear read-out."""

    cell: str = option("lstm", "Recurrent cell: lstm, gru or rnn (tanh).")
    embed: int = option(16, "Embedding size of the input symbols.")
    hidden: int = option(128, "Hidden units per layer.")
    layers: int = option(1, "Stacked recurrent layers.")

    @property
    def output_size(self) -> int:
        """Classes of the read-out, for the precision probe's shape: none to speak of (0)."""
        return 0

    def validate(self) -> None:
        choice("cell", self.cell, CELLS)
        for name, most in (("embed", 65_536), ("hidden", 65_536), ("layers", 64)):
            at_least(name, getattr(self, name), 1)
            if getattr(self, name) > most:
                raise CharRNNError(f"--{name} must be at most {most:,}, got {getattr(self, name):,}.")


@dataclass
class LessonTrainConfig(TrainConfig):
    """The engine's settings with a lesson's defaults; --minutes is the engine's --max-time."""

    DEFAULT_EPOCHS: ClassVar[int] = 10
    STEPS_PER_EPOCH: ClassVar[int] = 1000  # fresh batches count as an epoch

    batch_size: int = option(64, "Sequences per step.")
    lr: float = option(1e-3, "Learning rate.", resumable=True)
    weight_decay: float = option(0.0, "AdamW weight decay.", resumable=True)
    schedule: str = option("constant", "constant, cosine or plateau.", resumable=True)
    max_time: float | None = option(
        None, "Stop after this many minutes (this session).", resumable=True, flag="--minutes"
    )
    stop_when_solved: bool = option(
        True,
        "Stop at the first evaluation that solves 95% of the held-out sequences.",
        resumable=True,
        flag="--stop-when-solved/--keep-training",
    )
    eval_every: int = option(100, "Evaluate every N steps.", resumable=True)
    save_every: int = option(500, "Save a resumable checkpoint every N steps.", resumable=True)
    log_every: int = option(20, "Log the mean training loss every N steps.", resumable=True)
    precision: str = option("fp32", "fp32, or bf16/fp16 autocast (auto: as for training).", resumable=True)
    val_fraction: float = option(0.1, "Not used: the held-out sequences are --eval-sequences.", cli=False)


@dataclass
class LessonRunConfig(RunConfigBase):
    """Everything that describes a lesson run; saved as config.json with kind "lesson"."""

    DATA_FIELDS: ClassVar[tuple[str, ...]] = ()  # sequences are made up; no files

    lesson: LessonConfig = option(factory=LessonConfig)
    model: LessonModelConfig = option(factory=LessonModelConfig)
    training: LessonTrainConfig = option(factory=LessonTrainConfig)
    kind: str = "lesson"
    charrnn_version: str = __version__
    format_version: int = FORMAT_VERSION

    @classmethod
    def describe(cls, data: dict[str, Any]) -> dict[str, Any]:
        lesson = data.get("lesson") if isinstance(data.get("lesson"), dict) else {}
        return {
            "level": None,
            "vocab_size": None,
            "corpus": f"{lesson.get('task')} task, T = {lesson.get('length')}",
        }
