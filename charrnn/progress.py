"""Rich progress display for training (stderr), shared by the LM and seq2seq commands."""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

LN2 = math.log(2.0)


def loss_summary(loss: float | None, level: str) -> str:
    """A loss with the unit that suits the level: bits/char for char, perplexity otherwise."""
    if loss is None or not math.isfinite(loss):
        return "-"
    if level == "char":
        return f"{loss:.4f} ({loss / LN2:.3f} bpc)"
    return f"{loss:.4f} (ppl {math.exp(min(loss, 50)):.1f})"


def format_seconds(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class RichReporter:
    """Shows training progress: a live bar on a terminal, plain lines otherwise (CI, pipes)."""

    def __init__(self, console: Console | None = None, plain_every: float = 15.0) -> None:
        self.console = console or Console(stderr=True)
        self.plain_every = plain_every
        self.progress: Progress | None = None
        self.task = None
        self.info: dict[str, Any] = {}
        self.level = "char"
        self.last_plain = 0.0
        self.val_text = "-"
        self.started = time.perf_counter()

    def start(self, info: dict[str, Any]) -> None:
        self.info = info
        self.level = info.get("level", "char")
        self.started = time.perf_counter()
        resumed = " (resumed at step {})".format(info["start_step"]) if info.get("resumed") else ""
        self.console.print(
            f"[bold]charrnn[/] training{resumed}: {info.get('parameters', 0):,} parameters, "
            f"vocab {info.get('vocab_size')}, {info.get('train_tokens', 0):,} train / "
            f"{info.get('val_tokens', 0):,} val tokens, device {info.get('device')}, run {info.get('run_dir')}"
        )
        if self.console.is_terminal:
            self.progress = Progress(
                BarColumn(bar_width=16),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "train", total=info.get("total_steps"), completed=info.get("start_step", 0), status=""
            )

    def _eta(self, step: int, elapsed_session: float) -> str:
        done = step - self.info.get("start_step", 0)
        if done <= 0:
            return "?"
        remaining = (self.info.get("total_steps", step) - step) * elapsed_session / done
        max_time = self.info.get("max_time")
        if max_time:
            remaining = min(remaining, max_time * 60 - elapsed_session)
        return format_seconds(remaining)

    def step(self, record: dict[str, Any]) -> None:
        now = time.perf_counter()
        status = (
            f"ep {record['epoch']:.2f}  loss {record['train_loss']:.4f}  val {self.val_text}  "
            f"{record['tokens_per_second']:,.0f} tok/s  ETA {self._eta(record['step'], now - self.started)}"
        )
        if self.progress is not None:
            self.progress.update(self.task, completed=record["step"], status=status)
        elif now - self.last_plain >= self.plain_every:
            self.last_plain = now
            self.console.print(f"step {record['step']}/{self.info.get('total_steps')}  {status}", highlight=False)

    def evaluate(self, record: dict[str, Any]) -> None:
        self.val_text = loss_summary(record["val_loss"], self.level) + (" *" if record.get("best") else "")
        if self.progress is None:
            self.console.print(f"step {record['step']}  validation {self.val_text}", highlight=False)

    def message(self, text: str) -> None:
        self.console.print(f"[yellow]{text}[/]")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def summary_table(rows: list[tuple[str, str]], title: str) -> Table:
    """A two-column table of results."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table
