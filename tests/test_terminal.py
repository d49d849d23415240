"""The terminal at 80 columns: the progress bar, the Ctrl-C note, `train --help` in panels."""

from __future__ import annotations

import io
import re
import signal

import pytest
from rich.console import Console

from charrnn.cli.display import RichReporter, StopFlag, training_session

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def rendered_bar(total: int | None) -> str:
    """The last frame of the training progress bar on an 80-column terminal, late in a long run."""
    console = Console(width=80, force_terminal=True, file=io.StringIO(), color_system=None)
    reporter = RichReporter(console=console)
    reporter.start({"total_steps": total, "start_step": 0, "max_time": 10, "level": "char", "run_dir": "run"})
    reporter.evaluate({"step": 1800, "val_loss": 1.2998, "best": True})
    reporter.step(
        {"step": 1830, "epoch": 29.72, "train_loss": 1.23, "tokens_per_second": 29871.2, "elapsed": 99.0}
    )
    reporter.close()
    return ANSI.sub("", console.file.getvalue()).splitlines()[-1]


@pytest.mark.parametrize("total", [4100, None])
def test_the_progress_bar_fits_80_columns(total: int | None) -> None:
    line = rendered_bar(total)
    assert "…" not in line and len(line) <= 80
    assert ("1,830/4,100" if total else "step 1,830") in line
    for part in ("ep 29.72", "loss 1.230", "val 1.300 *", "29.9k tok/s", "ETA"):
        assert part in line


def test_the_ctrl_c_note_starts_its_own_line_below_the_bar(capfd: pytest.CaptureFixture[str]) -> None:
    previous = signal.getsignal(signal.SIGINT)
    try:
        with training_session() as (stop, reporter):
            reporter.progress = object()  # a live bar holds the last line (no terminal in tests to draw one)
            stop()  # the training loop has started asking (before that, a signal ends the command at once)
            stop.handle(signal.SIGINT, None)
            reporter.progress = None
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capfd.readouterr().err.startswith("\ncharrnn: stopping after this step")
    plain = StopFlag()  # without a bar (plain lines end with a line break): no empty line
    plain()
    plain.handle(signal.SIGTERM, None)
    signal.signal(signal.SIGINT, previous)
    assert capfd.readouterr().err.startswith("charrnn: stopping")


def help_text(args: list[str], columns: int, monkeypatch: pytest.MonkeyPatch) -> str:
    from tests.support import run_cli

    monkeypatch.setenv("COLUMNS", str(columns))
    result = run_cli([*args, "--help"])
    assert result.code == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", [["train"], ["seq2seq", "train"]])
def test_train_help_is_in_panels_with_short_texts_at_80_columns(command: list[str], monkeypatch) -> None:
    narrow = help_text(command, 80, monkeypatch)
    panels = re.findall(r"╭─ (.+?) ─", narrow)
    assert panels == ["Arguments", "Options", "Data", "Model", "Training", "Schedule and stopping", "Output", "Performance"]  # fmt: skip
    assert len(narrow.splitlines()) < 190 and "…" not in narrow  # 231 and 275 lines in one box before
    assert max(len(line) for line in narrow.splitlines()) <= 80
    words = " ".join(narrow.replace("│", " ").split())
    assert "minutes of wall clock. " in words and "(this session" not in words  # without the remark in parentheses
    wide = help_text(command, 200, monkeypatch)
    assert "(this session, evaluations and saves included)" in " ".join(wide.replace("│", " ").split())
