"""What a training call reports and remembers: counters, results, and the progress protocol."""

from __future__ import annotations

import dataclasses
import math
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
    # the gradient norm before clipping (`charrnn.core.gradnorms`): the window's Σ‖g‖, max ‖g‖, steps clipped and
    # counted, and the run's steps clipped and counted (resume files written before these start them at 0)
    window_grad_sum: float = 0.0
    window_grad_max: float = 0.0
    window_clipped: int = 0
    window_grad_steps: int = 0
    clipped_steps: int = 0
    grad_steps: int = 0

    chunks_per_epoch: int = (
        0  # steps in an epoch (0 in runs saved before charrnn 0.3), for epochs = epoch + chunk / it
    )

    @classmethod
    def from_dict(cls, data: Any) -> TrainState:
        """The counters saved in a resume file, each checked for its type and range (ValueError if not)."""
        if not isinstance(data, dict):
            raise ValueError("train_state is not a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"train_state has unknown fields {unknown[:3]}")
        for name, value in data.items():
            annotation = known[name].type  # a string: the module uses postponed annotations
            if annotation == "int":
                ok = type(value) is int and value >= 0
            elif value is None:
                ok = "None" in annotation
            else:
                ok = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
                if name == "lr_scale":
                    ok = ok and 0 < value <= 1
                elif name in ("elapsed", "window_loss"):
                    ok = ok and math.isfinite(value) and value >= 0
            if not ok:
                raise ValueError(
                    f"train_state {name} is {value!r}, not a valid {annotation.replace(' | None', '')}"
                )
        return cls(**data)


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
    clipped_share: float | None = None  # the share of the run's steps whose gradient norm was clipped
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
