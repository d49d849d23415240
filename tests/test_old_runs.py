"""Runs written by charrnn before the core/lm/seq2seq layout (format version 1) keep working, with the same results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import charrnn
from charrnn.core.rundir import read_metrics
from charrnn.core.version import FORMAT_VERSION
from charrnn.lm.run import LanguageModelRun
from charrnn.seq2seq.run import TranslationRun

OLD_RUNS = Path(__file__).resolve().parent / "data" / "old_runs"


@pytest.fixture
def old_lm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    """A copy of the format-1 LM run; the working directory is its folder (its corpus path is relative)."""
    folder = shutil.copytree(OLD_RUNS / "lm-char", tmp_path / "lm-char")
    monkeypatch.chdir(folder)
    return Path("run"), json.loads((folder / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def old_seq2seq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    folder = shutil.copytree(OLD_RUNS / "seq2seq-char", tmp_path / "seq2seq-char")
    monkeypatch.chdir(folder)
    return Path("run"), json.loads((folder / "expected.json").read_text(encoding="utf-8"))


def test_the_fixtures_are_format_1() -> None:
    for name in ("lm-char", "seq2seq-char"):
        assert json.loads((OLD_RUNS / name / "run" / "config.json").read_text())["format_version"] == 1
    assert FORMAT_VERSION == 2


def test_old_lm_run_loads_and_samples_the_same_text(old_lm) -> None:
    run_dir, expected = old_lm
    run = charrnn.load(run_dir)
    assert isinstance(run, LanguageModelRun) and run.note is None
    want = expected["sample"]
    text = run.sample(want["prime"], want["length"], want["temperature"], seed=want["seed"])
    assert text == want["text"]
    assert (
        "".join(run.stream(want["prime"], want["length"], want["temperature"], seed=want["seed"])) == want["text"]
    )


def test_old_lm_run_scores_the_same(old_lm) -> None:
    run_dir, expected = old_lm
    scores = charrnn.load(run_dir).score([s["sentence"] for s in expected["scores"]])
    for got, want in zip(scores, expected["scores"], strict=True):
        assert got.token_ids == want["token_ids"] and got.tokens == want["tokens"]
        assert got.logprob == pytest.approx(want["logprob"], abs=1e-5)
        assert got.token_logprobs == pytest.approx(want["token_logprobs"], abs=1e-5)


def test_old_lm_run_resumes_with_the_same_losses(old_lm) -> None:
    run_dir, expected = old_lm
    result = charrnn.train(resume=run_dir, max_steps=9)
    assert result.steps == 9
    records = [r for r in read_metrics(run_dir) if "train_loss" in r and r["step"] > 6]
    assert [r["step"] for r in records] == [r["step"] for r in expected["resume_to_9"]]
    assert [r["train_loss"] for r in records] == pytest.approx(
        [r["train_loss"] for r in expected["resume_to_9"]], rel=1e-6
    )
    assert result.best_val_loss == pytest.approx(expected["resume_best_val"], rel=1e-6)
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["training"]["max_steps"] == 9 and saved["format_version"] == FORMAT_VERSION


def test_old_lm_run_through_the_cli(old_lm, capsys: pytest.CaptureFixture[str]) -> None:
    from charrnn.cli import main

    run_dir, expected = old_lm
    want = expected["sample"]
    args = ["sample", str(run_dir), "-p", want["prime"], "-n", str(want["length"]), "-t", str(want["temperature"])]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--seed", str(want["seed"])])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == want["text"] + "\n"
    with pytest.raises(SystemExit) as exit_info:
        main(["score-sentence", str(run_dir), "--json", *[s["sentence"] for s in expected["scores"]]])
    assert exit_info.value.code == 0
    payload = json.loads(capsys.readouterr().out)
    assert [s["logprob"] for s in payload] == pytest.approx([s["logprob"] for s in expected["scores"]], abs=1e-5)


def test_old_seq2seq_run_translates_and_scores_the_same(old_seq2seq) -> None:
    run_dir, expected = old_seq2seq
    run = charrnn.load(run_dir)
    assert isinstance(run, TranslationRun)
    for beam, key in ((1, "greedy"), (2, "beam2")):
        got = run.translate(expected["sources"], beam, max_length=20)
        assert [t.text for t in got] == [t["text"] for t in expected[key]]
        assert [t.logprob for t in got] == pytest.approx([t["logprob"] for t in expected[key]], abs=1e-4)
    scores = run.score(list(zip(expected["sources"], expected["references"], strict=True)))
    assert [s.logprob for s in scores] == pytest.approx([s["logprob"] for s in expected["scores"]], abs=1e-4)


def test_old_seq2seq_run_resumes_with_the_same_losses(old_seq2seq) -> None:
    run_dir, expected = old_seq2seq
    result = charrnn.train(resume=run_dir, max_steps=9)
    assert result.steps == 9
    records = [r for r in read_metrics(run_dir) if "train_loss" in r and r["step"] > 6]
    assert [r["train_loss"] for r in records] == pytest.approx(
        [r["train_loss"] for r in expected["resume_to_9"]], rel=1e-6
    )
    training = json.loads((run_dir / "config.json").read_text())["training"]
    assert "bptt" not in training and training["max_steps"] == 9  # migrated to format 2
