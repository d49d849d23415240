"""Configuration dataclasses for tokenizers, models and training, saved with every run."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from charrnn import FORMAT_VERSION, __version__
from charrnn.errors import CharRNNError

LEVELS = ("char", "word", "subword")
CELLS = ("lstm", "gru", "rnn")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("plateau", "cosine", "constant")
SOFTMAXES = ("full", "adaptive")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TokenizerConfig:
    """How text becomes token ids."""

    level: str = "char"
    lowercase: bool = False
    vocab_size: int | None = None  # None: keep every unit (char/word); subword needs a size
    min_count: int = 1
    subword_model: str = "unigram"  # sentencepiece model type: unigram or bpe

    def validate(self) -> None:
        _choice("level", self.level, LEVELS)
        _choice("subword model", self.subword_model, ("unigram", "bpe"))
        if self.vocab_size is not None and self.vocab_size < 4:
            raise CharRNNError(f"--vocab-size must be at least 4, got {self.vocab_size}.")
        if self.min_count < 1:
            raise CharRNNError(f"--min-count must be at least 1, got {self.min_count}.")


@dataclass
class ModelConfig:
    """Shape of the embedding -> recurrent stack -> softmax model."""

    vocab_size: int = 0  # filled in from the tokenizer
    cell: str = "lstm"
    embed: int = 128
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.2
    tie_weights: bool = False
    softmax: str = "full"
    adaptive_cutoffs: list[int] = field(default_factory=list)

    def validate(self) -> None:
        _choice("cell", self.cell, CELLS)
        _choice("softmax", self.softmax, SOFTMAXES)
        for name in ("embed", "hidden", "layers"):
            if getattr(self, name) < 1:
                raise CharRNNError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise CharRNNError(f"--dropout must be in [0, 1), got {self.dropout}.")
        if self.tie_weights and self.embed != self.hidden:
            raise CharRNNError(
                f"--tie-weights needs --embed equal to --hidden (got {self.embed} and {self.hidden})."
            )
        if self.tie_weights and self.softmax == "adaptive":
            raise CharRNNError("--tie-weights cannot be combined with --softmax adaptive; pick one.")


@dataclass
class TrainConfig:
    """Optimisation, data layout and stopping rules for language-model training."""

    batch_size: int = 32
    bptt: int = 128
    optimizer: str = "adamw"
    lr: float = 6e-3
    weight_decay: float = 0.01
    schedule: str = "cosine"  # to the end of --epochs/--max-steps, or of --max-time when given
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    warmup_steps: int = 0
    min_lr: float = 1e-5
    min_lr_fraction: float = 0.1  # cosine ends at max(min_lr, this fraction of lr)
    clip: float = 1.0
    epochs: int = 50
    max_steps: int | None = None
    max_time: float | None = None  # minutes
    val_fraction: float = 0.1
    eval_every: int = 200
    eval_tokens: int | None = 200_000  # cap on validation tokens per evaluation
    save_every: int = 200
    save_every_minutes: float | None = None  # also save a resumable checkpoint this often
    log_every: int = 10  # steps per train-loss record in metrics.jsonl
    seed: int = 1234
    device: str = "auto"
    threads: int | None = None
    max_bad_steps: int = 5  # consecutive non-finite steps before rolling back
    precision: str = "fp32"  # bf16/fp16 autocast for the forward pass (meant for CUDA; fp16 adds loss scaling)
    compile: bool = False  # torch.compile the model (meant for CUDA)

    def validate(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("device", self.device, ("auto", "cpu", "cuda", "mps"))
        _choice("precision", self.precision, PRECISIONS)
        for name in ("batch_size", "bptt", "epochs", "eval_every", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise CharRNNError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise CharRNNError(f"--lr must be a positive number, got {self.lr}.")
        if not 0.0 <= self.min_lr_fraction <= 1.0:
            raise CharRNNError(f"min_lr_fraction must be in [0, 1], got {self.min_lr_fraction}.")
        if not (self.clip > 0 and math.isfinite(self.clip)):
            raise CharRNNError(f"--clip must be a positive number, got {self.clip}.")
        if not 0.0 < self.val_fraction < 0.5:
            raise CharRNNError(f"--val-fraction must be in (0, 0.5), got {self.val_fraction}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise CharRNNError(f"--max-steps must be at least 1, got {self.max_steps}.")
        if self.max_time is not None and not self.max_time > 0:
            raise CharRNNError(f"--max-time must be a positive number of minutes, got {self.max_time}.")
        if self.save_every_minutes is not None and not (
            self.save_every_minutes > 0 and math.isfinite(self.save_every_minutes)
        ):
            raise CharRNNError(
                f"--save-every-minutes must be a positive number of minutes, got {self.save_every_minutes}."
            )
        if self.threads is not None and self.threads < 1:
            raise CharRNNError(f"--threads must be at least 1, got {self.threads}.")


@dataclass
class RunConfig:
    """Everything that describes a language-model run; saved as config.json."""

    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    corpus: str = ""
    val_corpus: str | None = None
    kind: str = "lm"
    charrnn_version: str = __version__
    format_version: int = FORMAT_VERSION

    def validate(self) -> None:
        self.tokenizer.validate()
        self.model.validate()
        self.training.validate()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return cls(
            tokenizer=dataclass_from_dict(TokenizerConfig, data.get("tokenizer", {})),
            model=dataclass_from_dict(ModelConfig, data.get("model", {})),
            training=dataclass_from_dict(TrainConfig, data.get("training", {})),
            **{k: v for k, v in data.items() if k not in ("tokenizer", "model", "training")},
        )


T = TypeVar("T")


def dataclass_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass `cls` from `data`, rejecting unknown keys with a clear error."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise CharRNNError(f"Unknown {cls.__name__} setting(s) {unknown}; known: {sorted(known)}.")
    return cls(**data)


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object from `path` with a one-line error when it is missing or malformed."""
    if not path.is_file():
        raise CharRNNError(f"{path} is missing.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CharRNNError(f"{path} is not valid JSON ({exc}); the run directory is damaged.") from None
    if not isinstance(data, dict):
        raise CharRNNError(f"{path} should hold a JSON object; the run directory is damaged.")
    return data


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise CharRNNError(f"Unknown {name} {value!r}; choose one of: {', '.join(allowed)}.")
