"""What a training call reports and remembers: counters, results, and the progress protocol."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass
class TrainState:
    """Counters that, with the weights and RNG states, pin down where training is."""

    step: int = 0
    epoch: int = 0
    chunk: int = 0  # next batch of the current epoch
    tokens_seen: int = 0
    elapsed: float = 0.0  # seconds of training over all sessions
    best_val_loss: float | None = None
    last_val_loss: float | None = None
    lr_scale: float = 1.0
    plateau_best: float | None = None
    plateau_bad: int = 0
    skipped_steps: int = 0
    bad_streak: int = 0
    rollbacks: int = 0
    window_loss: float = 0.0  # train losses summed since the last metrics record
    window_steps: int = 0
    chunks_per_epoch: int = (
        0  # steps in an epoch (0 in runs saved before charrnn 0.3), for epochs = epoch + chunk / it
    )


@dataclass
class TrainResult:
    """What a training call achieved."""

    run_dir: Path
    steps: int
    epochs: float
    best_val_loss: float | None
    last_val_loss: float | None
    tokens_per_second: float  # the session's tokens over its steps' time (evaluations and saves left out)
    seconds: float  # the session's wall-clock time: setup, steps, evaluations and saves (what --max-time counts)
    stop_reason: str
    skipped_steps: int = 0
    train_seconds: float = 0.0  # the session's optimisation steps
    setup_seconds: float = 0.0  # reading the data, building the model, before the first step
    level: str = "char"  # the (target) token level, for showing losses in bits/char or perplexity


def clock(seconds: float) -> str:
    """Seconds as a clock reading: 2:30, or 1:02:30 from an hour up."""
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Reporter(Protocol):
    """Receives progress; the CLI shows it with rich, the library and tests may ignore it."""

    def start(self, info: dict[str, Any]) -> None: ...
    def step(self, record: dict[str, Any]) -> None: ...
    def evaluate(self, record: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    """A reporter that shows nothing."""

    def start(self, info: dict[str, Any]) -> None:
        pass

    def step(self, record: dict[str, Any]) -> None:
        pass

    def evaluate(self, record: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        pass
