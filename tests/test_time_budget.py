"""--max-time is the wall-clock time of the session, evaluations and saves included; the summary, `info` and the
speed figures agree and say what they measure."""

from __future__ import annotations

import io
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

import charrnn
from charrnn.cli.display import time_rows
from charrnn.cli.inspect import info_rows
from charrnn.core.runinfo import run_facts
from charrnn.core.state import TrainState
from charrnn.core.training_loop import Session
from charrnn.kinds import CONFIG_CLASSES
from charrnn.lm.truncated_bptt import TruncatedBPTTTask
from tests.support import TINY_LM

SLOW_EVALUATION = 1.0  # seconds added to every evaluation


@pytest.fixture
def slow_evaluations(monkeypatch: pytest.MonkeyPatch) -> None:
    evaluate = TruncatedBPTTTask.evaluate

    def slow(self: TruncatedBPTTTask) -> float:
        time.sleep(SLOW_EVALUATION)
        return evaluate(self)

    monkeypatch.setattr(TruncatedBPTTTask, "evaluate", slow)


def test_max_time_is_wall_clock_with_evaluations_and_saves_included(
    tmp_path: Path, corpus_file: Path, slow_evaluations: None
) -> None:
    budget = 8.0  # the first evaluation (at step 10) measures how long the last one will take
    started = time.perf_counter()
    result = charrnn.train(corpus_file, out=tmp_path / "run", max_time=budget / 60, eval_every=10, **TINY_LM)
    wall = time.perf_counter() - started
    assert result.stop_reason == "max_time"
    assert wall <= budget + 0.75, f"{wall:.2f} s for a {budget} s budget"  # the last evaluation fits in it
    assert result.last_val_loss is not None  # ... and ran: the run stopped early enough for it
    assert result.seconds == pytest.approx(wall, abs=0.75)
    assert result.setup_seconds > 0 and 0 < result.train_seconds < result.seconds - SLOW_EVALUATION

    facts = run_facts(tmp_path / "run", CONFIG_CLASSES)
    assert facts["seconds_trained"] == pytest.approx(result.seconds, abs=1e-6)  # `info` and the summary agree
    rows = dict(info_rows(facts))
    summary = dict(time_rows(result, "tokens/s"))
    assert rows["time trained"].split()[0] == summary["time"].split()[0]
    assert "wall clock" in rows["time trained"] and "wall clock" in summary["time"]
    assert summary["speed"].startswith(f"{result.tokens_per_second:,.0f} tokens/s in steps (")
    assert "over the wall clock" in summary["speed"] and "evaluating and saving" in summary["of which"]
    step_speeds = [r["tokens_per_second"] for r in charrnn.core.rundir.read_metrics(tmp_path / "run") if "lr" in r]
    assert min(step_speeds) > 0.3 * result.tokens_per_second  # no window counts an evaluation as training time

    console = Console(width=80, file=io.StringIO())
    console.print(charrnn.cli.display.summary_table(list(summary.items()), "training summary"))
    assert max(len(line) for line in console.file.getvalue().splitlines()) <= 80


def test_a_last_evaluation_that_would_overrun_is_skipped_with_a_note() -> None:
    messages: list[str] = []
    session = Session.__new__(Session)  # only what the rule reads
    session.cfg = SimpleNamespace(max_time=3.0)
    session.state = TrainState(best_val_loss=1.5)
    session.reporter = SimpleNamespace(message=messages.append)
    session.session_start = time.perf_counter() - 170  # 10 s of the 3 minutes left
    session.save_seconds = 0.5
    session.eval_seconds = 25.0
    assert not session.last_evaluation_fits()
    assert messages and "last evaluation is skipped (it takes about 0:25, 0:09 is left)" in messages[0]
    session.eval_seconds = 5.0
    assert session.last_evaluation_fits()
    session.eval_seconds, session.state.best_val_loss = 25.0, None  # never skipped before the first evaluation
    assert session.last_evaluation_fits()


def test_warmup_scales_with_the_run_and_keeps_100_steps_for_the_default_run() -> None:
    from charrnn.core.optim import warmup_steps
    from charrnn.lm.config import LMTrainConfig
    from charrnn.seq2seq.config import Seq2SeqTrainConfig

    default = LMTrainConfig()
    assert default.warmup_steps is None and default.eval_every is None  # both follow the run unless given
    assert warmup_steps(default, 4_100) == 100  # the 10-minute Tiny Shakespeare run: 5% would be 205
    assert warmup_steps(default, 2_000) == 100  # the README's 5-minute run
    assert (
        warmup_steps(default, 300) == 15 and warmup_steps(default, 10) == 1 and warmup_steps(default, None) == 100
    )
    assert warmup_steps(LMTrainConfig(warmup_steps=50), 300) == 50  # given: as given
    assert warmup_steps(Seq2SeqTrainConfig(), 300) == 0


def test_a_short_step_budget_warms_up_and_evaluates_in_proportion(tmp_path: Path, corpus_file: Path) -> None:
    lr = 0.01
    charrnn.train(corpus_file, out=tmp_path / "run", max_steps=40, log_every=1, lr=lr, **TINY_LM)
    records = charrnn.core.rundir.read_metrics(tmp_path / "run")
    rates = [r["lr"] for r in records if "lr" in r]
    assert rates[0] == pytest.approx(lr / 2, rel=0.05) and max(rates) > 0.95 * lr  # 2 steps of warmup, not 100
    assert [r["step"] for r in records if "val_loss" in r] == list(range(4, 41, 4))  # every tenth, not every 200


@pytest.fixture
def slow_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    step_loss = TruncatedBPTTTask.step_loss

    def slow(self: TruncatedBPTTTask, state: TrainState):
        time.sleep(0.04)
        return step_loss(self, state)

    monkeypatch.setattr(TruncatedBPTTTask, "step_loss", slow)


def test_a_short_time_budget_warms_up_and_evaluates_in_proportion(
    tmp_path: Path, corpus_file: Path, slow_steps: None
) -> None:
    lr = 0.01
    charrnn.train(corpus_file, out=tmp_path / "run", max_time=0.05, log_every=1, lr=lr, **TINY_LM)  # ~60 steps
    records = charrnn.core.rundir.read_metrics(tmp_path / "run")
    rates = [r["lr"] for r in records if "lr" in r]
    assert max(rates) > 0.9 * lr  # warmed up within 5% of the time, not over 100 steps it never reaches
    assert len([r for r in records if "val_loss" in r]) >= 5  # about every tenth of the 3 seconds
