"""What the `charrnn train` and `charrnn seq2seq train` commands share: the stop flag and the summary."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from charrnn.progress import RichReporter, format_seconds, loss_summary, summary_table

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def err_console() -> Console:
    """A rich console on stderr (stdout is kept for results)."""
    return Console(stderr=True)


def bundled(path: Path) -> Path | None:
    """A bundled corpus file, from the working directory or the source checkout; None when absent."""
    for candidate in (path, PACKAGE_ROOT / path):
        if candidate.is_file():
            return candidate
    return None


class StopFlag:
    """First SIGINT/SIGTERM asks training to stop after the current step; a second SIGINT exits at once."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.signal is not None

    def handle(self, signum: int, frame) -> None:  # noqa: ARG002
        self.signal = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # os.write, not print: a handler that prints while the interrupted code prints raises "reentrant call"
        with contextlib.suppress(OSError):
            os.write(2, b"charrnn: stopping after this step and saving (Ctrl-C again to quit at once)\n")

    def install(self) -> dict[int, object]:
        """Install the handlers; returns the previous ones for `restore`."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGINT, self.handle)
        signal.signal(signal.SIGTERM, self.handle)
        return previous

    @staticmethod
    def restore(previous: dict[int, object]) -> None:
        """Put back the handlers `install` replaced."""
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def training_session() -> Iterator[tuple[StopFlag, RichReporter]]:
    """Signal handling and a progress display for the duration of a training call."""
    stop = StopFlag()
    previous = stop.install()
    reporter = RichReporter()
    try:
        yield stop, reporter
    finally:
        reporter.close()
        stop.restore(previous)


def report_training(
    result: Any,
    level: str,
    stop: StopFlag,
    *,
    title: str,
    speed_unit: str,
    resume_command: str,
    next_step: str,
) -> None:
    """Print the summary table; after an interruption, the resume command and exit 130 (SIGINT) or 143."""
    console = err_console()
    stopped_by = result.stop_reason
    if result.skipped_steps:
        stopped_by += f", {result.skipped_steps} steps skipped"
    rows = [
        ("run directory", str(result.run_dir)),
        ("steps", f"{result.steps:,} ({result.epochs:.2f} epochs)"),
        ("best validation", loss_summary(result.best_val_loss, level)),
        ("last validation", loss_summary(result.last_val_loss, level)),
        ("speed", f"{result.tokens_per_second:,.0f} {speed_unit}"),
        ("time", format_seconds(result.seconds)),
        ("stopped by", stopped_by),
    ]
    console.print(summary_table(rows, title=title))
    if result.stop_reason == "interrupted":
        # soft_wrap: the command stays on one line, ready to copy
        console.print(
            f"Interrupted; checkpoint saved. Resume with: {resume_command}", soft_wrap=True, highlight=False
        )
        raise typer.Exit(130 if stop.signal == signal.SIGINT else 143)
    console.print(next_step, soft_wrap=True, highlight=False)
