"""`charrnn info` and `charrnn runs` on the bundled old runs: facts read from files match the loaded model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import charrnn
from charrnn.core import rundir
from tests.support import REPO_ROOT
from tests.test_cli import run_cli

OLD_RUNS = REPO_ROOT / "tests" / "data" / "old_runs"


def test_info_json_agrees_with_the_loaded_model_and_the_resume_state(capsys) -> None:
    for name in ("lm-char", "seq2seq-char"):
        run_dir = OLD_RUNS / name / "run"
        code, out, err = run_cli(["info", str(run_dir), "--json"], capsys)
        assert code == 0, err
        facts = json.loads(out)
        loaded = charrnn.load(run_dir)
        state = rundir.read_metadata(run_dir / rundir.RESUME_FILE)["train_state"]
        assert facts["kind"] == loaded.kind and facts["level"] == "char"
        assert facts["parameters"] == sum(p.numel() for p in loaded.model.parameters())
        assert facts["steps"] == state["step"] and facts["tokens_seen"] == state["tokens_seen"]
        assert facts["best_val_loss"] == state["best_val_loss"]
        assert math.isclose(facts["best_val_bits_per_char"], state["best_val_loss"] / math.log(2))
        assert facts["charrnn_version"] == "0.1.0" and facts["created"] is not None
        assert {k: loaded.info()[k] for k in facts if k != "parameters"} == {
            k: v for k, v in facts.items() if k != "parameters"
        }


def test_info_table_names_the_units(capsys) -> None:
    code, out, _ = run_cli(["info", str(OLD_RUNS / "lm-char" / "run")], capsys)
    assert code == 0
    assert "nats/token" in out and "bits/char" in out and "language model" in out


def test_runs_lists_each_run_best_first_and_reports_damaged_folders(tmp_path: Path, capsys) -> None:
    shutil.copytree(OLD_RUNS, tmp_path / "runs")
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "config.json").write_text("{not json", encoding="utf-8")
    code, out, err = run_cli(["runs", str(tmp_path / "runs"), "--json"], capsys)
    assert code == 0
    listed = json.loads(out)
    losses = [r["best_val_loss"] for r in listed]
    assert len(listed) == 2 and losses == sorted(losses)
    assert "broken" in err and err.count("\n") == 1
    code, out, _ = run_cli(["runs", str(tmp_path / "runs")], capsys)
    lines = [line for line in out.splitlines() if line.lstrip().startswith(("lm-", "seq2seq-"))]
    assert [line.split()[0] for line in lines] == ["lm-char/run", "seq2seq-char/run"]  # by kind, not by nats
    code, _, err = run_cli(["runs", str(tmp_path / "nowhere")], capsys)
    assert code == 1 and "nowhere is not a directory" in err


def test_info_shows_what_was_resolved_and_the_epochs_of_the_last_step(
    tmp_path: Path, corpus_file, capsys, monkeypatch
) -> None:
    from charrnn.cli.display import PlainConsole
    from tests.support import TINY_LM

    settings = {**TINY_LM, "device": "auto"}
    result = charrnn.train(corpus_file, out=tmp_path / "run", max_steps=7, log_every=5, **settings)
    code, out, _ = run_cli(["info", str(tmp_path / "run"), "--json"], capsys)
    facts = json.loads(out)
    assert facts["precision"] == "fp32 (auto)" and facts["device"] == "cpu"  # not "auto" / "auto"
    assert facts["epochs"] == result.epochs  # step 7, not the last logged training record (step 5)
    with_console = PlainConsole(width=80, force_terminal=False)
    monkeypatch.setattr("charrnn.cli.inspect.out_console", lambda: with_console)
    with with_console.capture() as captured:
        run_cli(["info", str(tmp_path / "run")], capsys)
    table = captured.get()
    assert "cpu / fp32 (auto)" in table and f"{result.epochs:.2f}" in table
    assert max(len(line) for line in table.splitlines()) <= 80


def test_runs_fits_80_columns_grouped_by_kind_and_level_in_their_units(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    from charrnn.cli.display import PlainConsole
    from tests.support import TINY_LM

    shutil.copytree(OLD_RUNS, tmp_path / "runs")
    word = tmp_path / "runs" / "shakespeare-words"
    corpus = tmp_path / "words.txt"
    corpus.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 50, encoding="utf-8")
    charrnn.train(corpus, out=word, level="word", max_steps=2, **TINY_LM)
    terminal = PlainConsole(width=80, force_terminal=True, color_system=None)
    monkeypatch.setattr("charrnn.cli.inspect.out_console", lambda: terminal)
    with terminal.capture() as captured:
        code, _, _ = run_cli(["runs", str(tmp_path / "runs")], capsys)
    out = captured.get()
    assert code == 0 and "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    titles = [line.strip() for line in out.splitlines() if line.strip().endswith(" level")]
    assert titles == [
        "language model, char level",
        "language model, word level",
        "seq2seq (translation), char level",
    ]
    assert "best bits/char" in out and "best perplexity" in out and word.name in out
    char_row = next(line for line in out.splitlines() if line.strip().startswith("lm-char/run"))
    bits = json.loads(run_cli(["info", str(tmp_path / "runs" / "lm-char" / "run"), "--json"], capsys)[1])
    assert f"{bits['best_val_bits_per_char']:.3f}" in char_row
