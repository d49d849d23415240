"""The configuration both models share: how text becomes tokens, and how the training engine runs.

Each field is declared once with `option(...)` (default, help, whether it may change on resume);
the CLI, `charrnn.train`, TOML files and config.json all read these declarations.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from charrnn.core.errors import CharRNNError
from charrnn.core.options import dataclass_from_dict, option
from charrnn.core.safeio import read_regular

R = TypeVar("R", bound="RunConfigBase")

LEVELS = ("char", "word", "subword")
CELLS = ("lstm", "gru", "rnn")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("plateau", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class TokenizerConfig:
    """How text becomes token ids."""

    level: str = option("char", "Token unit: char, word or subword.")
    lowercase: bool = option(False, "Lowercase text before tokenizing.")
    vocab_size: int | None = option(
        None, "Keep at most this many units, specials included (subword: the sentencepiece size, required)."
    )
    min_count: int = option(1, "Drop units seen fewer times (they become <unk>).")
    subword_model: str = option("unigram", "sentencepiece model: unigram or bpe.")

    def validate(self) -> None:
        choice("level", self.level, LEVELS)
        choice("subword model", self.subword_model, ("unigram", "bpe"))
        if self.vocab_size is not None and not 4 <= self.vocab_size <= 10_000_000:
            raise CharRNNError(f"--vocab-size must be between 4 and 10,000,000, got {self.vocab_size}.")
        if self.min_count < 1:
            raise CharRNNError(f"--min-count must be at least 1, got {self.min_count}.")


@dataclass
class TrainConfig:
    """What the training engine needs, whatever the model: optimiser, schedule, stopping rules, cadence.

    The language model and seq2seq extend it (`LMTrainConfig`, `Seq2SeqTrainConfig`) with their own
    data settings and, where they need them, their own defaults.
    """

    DEFAULT_EPOCHS: ClassVar[int] = 50  # the epoch limit when no stopping rule is given at all
    # Without --eval-every / --warmup-steps (None): evaluate every AUTO_EVAL_EVERY steps, or every tenth of
    # the run when that is sooner; warm up over AUTO_WARMUP_STEPS, or 5% of the run when that is shorter
    # (`charrnn.core.optim.warmup_steps`, `charrnn.core.training_loop.Session.evaluation_due`).
    AUTO_EVAL_EVERY: ClassVar[int] = 200
    AUTO_WARMUP_STEPS: ClassVar[int] = 0

    batch_size: int = option(32, "Parallel streams (LM) or sentence pairs (seq2seq) per step.")
    optimizer: str = option("adamw", "adamw, adam or sgd.")
    lr: float = option(6e-3, "Peak learning rate.", resumable=True)
    weight_decay: float = option(0.01, "AdamW weight decay.", resumable=True)
    schedule: str = option(
        "cosine",
        "cosine (decays to the end of --max-time when given, else of the steps), plateau or constant.",
        resumable=True,
    )
    plateau_factor: float = option(
        0.5, "plateau: multiply the learning rate by this when validation stalls.", resumable=True
    )
    plateau_patience: int = option(
        2, "plateau: evaluations without improvement before lowering the rate.", resumable=True
    )
    warmup_steps: int | None = option(0, "Linear learning-rate warmup steps.", resumable=True)
    min_lr: float = option(1e-5, "The learning rate never goes below this.", resumable=True)
    min_lr_fraction: float = option(0.1, "cosine ends at max(--min-lr, this fraction of --lr).", resumable=True)
    clip: float = option(1.0, "Clip the gradient norm to this value.", resumable=True)
    epochs: int | None = option(
        None,
        "Passes over the training data (default: no limit when --max-steps or --max-time is given, else 50).",
        resumable=True,
    )
    max_steps: int | None = option(None, "Stop after this many steps in total.", resumable=True)
    max_time: float | None = option(
        None,
        "Stop after this many minutes of wall clock (this session, evaluations and saves included).",
        resumable=True,
    )
    val_fraction: float = option(0.1, "Fraction of the data held out for validation when no --val is given.")
    eval_every: int | None = option(
        None, "Evaluate every N steps (default: 200, or a tenth of the run when that is sooner).", resumable=True
    )
    save_every: int = option(200, "Save a resumable checkpoint every N steps.", resumable=True)
    save_every_minutes: float | None = option(
        None, "Also save a resumable checkpoint every M minutes.", resumable=True
    )
    keep_checkpoints: int = option(
        0, "Also keep the last N resumable checkpoints in checkpoints/, named by step and validation loss.",
        resumable=True,
    )  # fmt: skip
    log_every: int = option(10, "Log the mean training loss every N steps.", resumable=True)
    seed: int = option(1234, "Random seed (a CPU run with a step budget repeats exactly).")
    device: str = option("auto", "auto, cpu, cuda or mps.", resumable=True)
    threads: int | None = option(
        None, "CPU threads (default: the cores not busy with other work at start, at most 8).", resumable=True
    )
    max_bad_steps: int = option(
        5, "Consecutive non-finite steps before rolling back to the last checkpoint.", resumable=True
    )
    precision: str = option(
        "auto",
        "auto (bf16 where the GPU or CPU runs it fast, else fp32), fp32, or bf16/fp16 autocast for the forward "
        "pass (fp16 adds loss scaling).",
        resumable=True,
    )
    resolved_precision: str | None = option(
        None, "The precision training runs in (what auto chose), set by charrnn.", derived=True
    )
    resolved_device: str | None = option(
        None, "The device training runs on (what auto chose), set by charrnn.", derived=True
    )
    compile: bool = option(
        False, "torch.compile the model's forward pass (for CUDA GPUs).", resumable=True, flag="--compile"
    )

    @property
    def epoch_limit(self) -> int | None:
        """The epoch bound in force: --epochs; none when only --max-steps/--max-time bound the run; else the default."""
        if self.epochs is not None:
            return self.epochs
        if self.max_steps is not None or self.max_time is not None:
            return None
        return self.DEFAULT_EPOCHS

    def validate(self) -> None:
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("schedule", self.schedule, SCHEDULES)
        choice("device", self.device, DEVICES)
        choice("precision", self.precision, PRECISIONS)
        for name in ("batch_size", "save_every", "log_every", "max_bad_steps"):
            at_least(name, getattr(self, name), 1)
        if self.eval_every is not None:
            at_least("eval_every", self.eval_every, 1)
        at_least("keep_checkpoints", self.keep_checkpoints, 0)
        at_least("plateau_patience", self.plateau_patience, 0)  # 0: lower at the first stalled evaluation
        if self.batch_size > 1_000_000:
            raise CharRNNError(f"--batch-size {self.batch_size} is far too large.")
        if self.epochs is not None:
            at_least("epochs", self.epochs, 1)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise CharRNNError(f"--lr must be a positive number, got {self.lr}.")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise CharRNNError(f"--weight-decay must be 0 or a positive number, got {self.weight_decay}.")
        if not (0 < self.plateau_factor <= 1):
            raise CharRNNError(f"--plateau-factor must be in (0, 1], got {self.plateau_factor}.")
        if not (self.min_lr >= 0 and math.isfinite(self.min_lr)):
            raise CharRNNError(f"--min-lr must be 0 or a positive number, got {self.min_lr}.")
        if not 0.0 <= self.min_lr_fraction <= 1.0:
            raise CharRNNError(f"--min-lr-fraction must be in [0, 1], got {self.min_lr_fraction}.")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise CharRNNError(f"--warmup-steps must be 0 or more, got {self.warmup_steps}.")
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise CharRNNError(f"--clip must be a positive number, got {self.clip}.")
        if not 0.0 < self.val_fraction < 0.5:
            raise CharRNNError(f"--val-fraction must be in (0, 0.5), got {self.val_fraction}.")
        if self.max_steps is not None:
            at_least("max_steps", self.max_steps, 1)
        if self.max_time is not None and not (self.max_time > 0 and math.isfinite(self.max_time)):
            raise CharRNNError(f"--max-time must be a positive number of minutes, got {self.max_time}.")
        if self.save_every_minutes is not None and not (
            self.save_every_minutes > 0 and math.isfinite(self.save_every_minutes)
        ):
            raise CharRNNError(
                f"--save-every-minutes must be a positive number of minutes, got {self.save_every_minutes}."
            )
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise CharRNNError(f"--threads must be between 1 and 1024, got {self.threads}.")
        if not 0 <= self.seed < 2**63:
            raise CharRNNError(f"--seed must be between 0 and 2**63 - 1, got {self.seed}.")


class RunConfigBase:
    """What every run config (`lm.config.RunConfig`, `seq2seq.config.Seq2SeqRunConfig`) does: validate, JSON."""

    def validate(self) -> None:
        """Check every part (tokenizer(s), model, training) with one-line errors."""
        for part in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, part.name)
            if dataclasses.is_dataclass(value):
                value.validate()

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """Build the config from config.json data, refusing unknown keys and wrong types."""
        return dataclass_from_dict(cls, data, "config")

    def complete(self, given: set[str]) -> None:
        """Fill in settings that follow from others, once a fresh run's settings are applied (`given`: the
        dotted paths the user set); a classifier's --init-from takes its language model's tokenizer and shape."""

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        """config.json data of any readable format version, as this version reads it (a kind's own changes)."""
        return data

    @classmethod
    def describe(cls, data: dict[str, Any]) -> dict[str, Any]:
        """From raw config.json data, what `charrnn info` shows of this kind: level, vocab_size, corpus."""
        raise NotImplementedError


def at_least(name: str, value: int, low: int) -> None:
    """Refuse `value` below `low`, naming the flag."""
    if value < low:
        raise CharRNNError(f"--{name.replace('_', '-')} must be at least {low}, got {value}.")


def choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Refuse a value outside `allowed`, listing the choices."""
    if value not in allowed:
        raise CharRNNError(f"Unknown {name} {value!r}; choose one of: {', '.join(allowed)}.")


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object from `path` with a one-line error when it is missing or malformed."""
    if not path.exists():
        raise CharRNNError(f"{path} is missing.")
    try:
        data = json.loads(read_regular(path, 1 << 24, "JSON file").decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CharRNNError(f"{path} is not valid JSON ({exc}); the run directory is damaged.") from None
    if not isinstance(data, dict):
        raise CharRNNError(f"{path} should hold a JSON object; the run directory is damaged.")
    return data
