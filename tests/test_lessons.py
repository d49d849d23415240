"""`charrnn lesson adding|copy`: the tasks' rules on hand-made sequences, and a tiny lesson run that trains, resumes, reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import charrnn
from charrnn.core import rundir
from charrnn.lessons.run import BELOW_BASELINE, SOLVED, STUCK_AT_BASELINE, Evaluation, LessonRun, verdict
from charrnn.lessons.tasks import BLANK, DELIMITER, AddingProblem, Batch, CopyTask
from tests.support import run_cli

TINY = ["--hidden", "8", "--embed", "4", "--batch-size", "4", "--eval-sequences", "20", "--threads", "1",
        "--eval-every", "3", "--save-every", "3", "--log-every", "2", "--device", "cpu"]  # fmt: skip


def records(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the clock, and without the evaluation a stop adds off the --eval-every cadence."""
    kept = [r for r in rundir.read_metrics(run_dir) if "train_loss" in r or r["step"] % 3 == 0 or r["step"] == 8]
    return [{k: v for k, v in r.items() if k not in ("elapsed", "tokens_per_second")} for r in kept]


def test_copy_task_layout_and_its_no_memory_baseline() -> None:
    length = 7
    batch = CopyTask.batch(torch.Generator().manual_seed(0), 3, length)
    assert batch.ids.shape == batch.targets.shape == (3, length + 20)
    symbols = batch.ids[:, :10]
    assert bool(((symbols >= 3) & (symbols <= 10)).all())
    assert bool((batch.ids[:, 10 : 10 + length - 1] == BLANK).all())  # T - 1 blanks
    assert bool((batch.ids[:, 10 + length - 1] == DELIMITER).all())  # then the delimiter
    assert bool((batch.ids[:, -10:] == BLANK).all())  # then 10 blanks
    assert bool((batch.targets[:, : length + 10] == BLANK).all()) and torch.equal(batch.targets[:, -10:], symbols)
    # a model with no memory: certain of the blanks, uniform over the 8 symbols when they are recalled
    logits = torch.full((3, length + 20, CopyTask.outputs), -1e9)
    logits[:, : length + 10, BLANK] = 0.0
    logits[:, length + 10 :, 3:11] = 0.0
    assert float(CopyTask.loss(logits, batch.targets)) == pytest.approx(10 * math.log(8) / (length + 20), rel=1e-6)
    assert CopyTask.baseline(length) == pytest.approx(10 * math.log(8) / 27)
    assert not CopyTask.solved(logits, batch.targets).any()
    logits[:, -10:].scatter_(-1, symbols.unsqueeze(-1), 5.0)  # now every recalled symbol is the most probable
    assert CopyTask.solved(logits, batch.targets).all()
    logits[1, -1, :] = 0.0
    logits[1, -1, BLANK] = 9.0  # one wrong symbol out of ten: not solved
    assert CopyTask.solved(logits, batch.targets).tolist() == [True, False, True]


def test_adding_problem_targets_and_the_success_rule() -> None:
    values = torch.tensor([[0.2, -0.6, 0.9, 0.1]]).unsqueeze(-1)
    marked = torch.tensor([[1, 2, 2, 1]])  # ids: 1 unmarked, 2 marked
    hand = Batch(marked, values, torch.tensor([0.5 + (-0.6 + 0.9) / 4]))
    assert float(hand.targets[0]) == pytest.approx(0.575)
    guesses = torch.tensor([0.575 + 0.039, 0.575 - 0.039, 0.575 + 0.041, 0.575 - 0.0405])
    assert AddingProblem.solved(guesses, hand.targets.expand(4)).tolist() == [True, True, False, False]
    batch = AddingProblem.batch(torch.Generator().manual_seed(1), 200, 10)
    marks = batch.ids - 1
    assert bool((marks[:, :5].sum(1) == 1).all() and (marks[:, 5:].sum(1) == 1).all())  # one mark per half
    x = batch.values.squeeze(-1)
    assert torch.allclose(batch.targets, 0.5 + (x * marks).sum(1) / 4)
    assert bool((x.abs() <= 1).all())


def test_adding_baseline_is_the_error_of_always_predicting_the_mean() -> None:
    batch = AddingProblem.batch(torch.Generator().manual_seed(2), 200_000, 4)
    mse = float(AddingProblem.loss(torch.full_like(batch.targets, 0.5), batch.targets))
    assert mse == pytest.approx(AddingProblem.baseline(4), rel=0.01) and AddingProblem.baseline(4) == 1 / 24


def test_verdicts_from_learning_curves() -> None:
    baseline = 0.04
    assert verdict([Evaluation(10, 0.05, 0.1), Evaluation(20, 0.039, 0.15)], baseline) == (STUCK_AT_BASELINE, None)
    assert verdict([Evaluation(10, 0.05, 0.1), Evaluation(20, 0.01, 0.5)], baseline) == (BELOW_BASELINE, None)
    curve = [Evaluation(10, 0.01, 0.5), Evaluation(20, 0.001, 0.96), Evaluation(30, 0.001, 0.99)]
    assert verdict(curve, baseline) == (SOLVED, 20)


def test_a_tiny_lesson_trains_resumes_bit_for_bit_and_reports(tmp_path: Path) -> None:
    whole, part = tmp_path / "whole", tmp_path / "part"
    first = run_cli(["lesson", "copy", "--length", "5", "--max-steps", "8", *TINY, "--out", str(whole), "--json"])
    assert first.code == 0, first.stderr
    result = json.loads(first.stdout)
    report = result["lesson"]
    assert (
        result["steps"] == 8
        and report["task"] == "copy"
        and report["baseline"] == pytest.approx(10 * math.log(8) / 25)
    )
    assert [e["step"] for e in report["curve"]] == [3, 6, 8] and all(
        0 <= e["solved"] <= 1 for e in report["curve"]
    )
    assert report["verdict"] in (SOLVED, STUCK_AT_BASELINE, BELOW_BASELINE)
    shown = run_cli(["lesson", "copy", "--length", "5", "--max-steps", "4", *TINY, "--out", str(part)])
    assert shown.code == 0 and "no-memory baseline" in shown.stderr and "stuck at the baseline" in shown.stderr
    resumed = run_cli(["lesson", "--resume", str(part), "--max-steps", "8"])
    assert resumed.code == 0, resumed.stderr
    assert records(part) == records(whole)  # losses, gradient norms, shares solved: bit for bit
    facts = json.loads(run_cli(["info", str(part), "--json"]).stdout)
    assert facts["kind"] == "lesson" and facts["steps"] == 8 and facts["corpus"] == "copy task, T = 5"
    run = charrnn.load(part)
    assert isinstance(run, LessonRun)
    figures = run.evaluate()
    assert figures["loss"] == pytest.approx(report["curve"][-1]["loss"], rel=1e-5)
    assert run.report().curve[-1].loss == pytest.approx(report["curve"][-1]["loss"], rel=1e-12)


def test_lesson_refuses_bad_settings_in_one_line(tmp_path: Path) -> None:
    run_cli(["lesson", "adding", "--length", "6", "--max-steps", "2", *TINY, "--out", str(tmp_path / "run")])
    for args, message, code in (
        (["lesson", "sorting", "--max-steps", "1"], "Unknown lesson task 'sorting'", 1),
        (["lesson", "adding", "--length", "1", "--max-steps", "1"], "--length must be at least 2", 1),
        (
            ["lesson", "--resume", str(tmp_path / "run"), "--length", "9"],
            "--length cannot change when resuming",
            1,
        ),
        (["lesson", "adding", "copy"], "unexpected extra argument", 2),  # one task: a usage error
        (["lesson", "adding", "--nproc", "2"], "--nproc is not available for `charrnn lesson`", 1),
    ):
        result = run_cli(args)
        assert result.code == code and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_default_run_name_names_the_task_cell_and_length() -> None:
    config, _ = charrnn.api.effective_config("copy", kind="lesson", cell="gru", length=30)
    assert charrnn.kinds.model_kind("lesson").run_name(config) == str(Path("checkpoints") / "lesson-copy-gru-T30")


def test_the_web_page_refuses_a_lesson_run_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    run_cli(["lesson", "adding", "--length", "4", "--max-steps", "1", *TINY, "--out", str(tmp_path / "run")])
    result = run_cli(["serve", str(tmp_path / "run")])
    assert result.code == 1 and "holds a lesson run, which the web page does not show" in result.stderr


def test_a_lesson_stops_at_the_first_evaluation_that_solves_it_unless_told_to_keep_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import charrnn.lessons.training as lesson_training

    shares = iter([0.5, 0.96, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # the share solved at each evaluation

    def evaluate(model: object, batch: Batch) -> tuple[float, float]:
        return 0.1, next(shares)

    monkeypatch.setattr(lesson_training, "evaluate_batch", evaluate)
    settings = dict(kind="lesson", cell="rnn", hidden=8, embed=4, batch_size=4, eval_sequences=20, length=4,
                    max_steps=12, eval_every=3, save_every=100, threads=1, device="cpu")  # fmt: skip
    stopped = charrnn.train("adding", out=tmp_path / "stops", **settings)
    assert stopped.steps == 6 and stopped.stop_reason == "solved"  # evaluations at 3 (50%) and 6 (96%)
    shares = iter([0.96] * 8)
    kept = charrnn.train("adding", out=tmp_path / "keeps", stop_when_solved=False, **settings)
    assert kept.steps == 12 and kept.stop_reason == "max_steps"
