"""Resume does what the user said: the saved config is the base, changeable flags override, others are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import charrnn
from charrnn.cli import main
from charrnn.core.errors import CharRNNError
from charrnn.core.rundir import WEIGHTS_FILE, read_metrics
from tests.support import TINY_FLAGS, TINY_LM


def stop_after(steps: int):
    """A should_stop callback that asks training to stop once `steps` steps have run (it checks before each step)."""
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > steps

    return should_stop


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def saved_training(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["training"]


def test_interrupted_run_resumes_to_its_own_max_steps(tmp_path: Path, corpus_file: Path) -> None:
    run = tmp_path / "run"
    first = charrnn.train(corpus_file, out=run, max_steps=24, eval_every=100, should_stop=stop_after(8), **TINY_LM)
    assert first.stop_reason == "interrupted" and first.steps == 8
    result = charrnn.train(resume=run)  # no flags: the run's max_steps 24 still holds, not the default epochs
    assert result.steps == 24 and result.stop_reason == "max_steps"


def test_explicit_stopping_rule_overrides_is_saved_and_echoed(
    tmp_path: Path, corpus_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    charrnn.train(corpus_file, out=run, max_steps=10, **TINY_LM)
    code, _, err = cli(["train", "--resume", run, "--max-steps", "14", "--lr", "0.01"], capsys)
    assert code == 0, err
    assert "resuming at step 10" in err and "max_steps 10 -> 14" in err and "lr 0.006 -> 0.01" in err
    assert saved_training(run)["max_steps"] == 14 and saved_training(run)["lr"] == 0.01
    assert max(r["step"] for r in read_metrics(run)) == 14
    assert charrnn.train(resume=run).steps == 14  # and it holds for the next resume


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--hidden", "64"], "--hidden"),
        (["--level", "word"], "--level"),
        (["--cell", "gru"], "--cell"),
        (["--bptt", "32"], "--bptt"),
        (["--seed", "5"], "--seed"),
    ],
)
def test_flags_that_cannot_change_mid_run_are_refused(
    tmp_path: Path, corpus_file: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    run = tmp_path / "run"
    charrnn.train(corpus_file, out=run, max_steps=4, **TINY_LM)
    before = (run / "resume.safetensors").read_bytes()
    code, _, err = cli(["train", "--resume", run, *flags, "--max-steps", "8"], capsys)
    assert code == 1 and err.startswith(f"charrnn: error: {named} cannot change when resuming")
    assert len(err.strip().splitlines()) == 1
    assert (run / "resume.safetensors").read_bytes() == before and saved_training(run)["max_steps"] == 4


def test_same_value_for_a_fixed_flag_is_accepted(tmp_path: Path, corpus_file: Path, capsys) -> None:
    run = tmp_path / "run"
    charrnn.train(corpus_file, out=run, max_steps=4, **TINY_LM)
    code, _, err = cli(["train", corpus_file, "--resume", run, *TINY_FLAGS, "--max-steps", "6"], capsys)
    assert code == 0, err


def test_other_corpus_on_resume_is_refused(tmp_path: Path, corpus_file: Path, capsys) -> None:
    run = tmp_path / "run"
    charrnn.train(corpus_file, out=run, max_steps=4, **TINY_LM)
    other = tmp_path / "poems.txt"
    other.write_text("roses are red\nviolets are blue\n" * 200)
    code, _, err = cli(["train", other, "--resume", run, "--max-steps", "8"], capsys)
    assert code == 1 and "poems.txt is not the data this run was trained on" in err
    with pytest.raises(CharRNNError, match="not the data this run was trained on"):
        charrnn.train(other, resume=run)


def test_max_steps_without_epochs_has_no_epoch_limit(tmp_path: Path, corpus_file: Path) -> None:
    settings = {**TINY_LM, "batch_size": 16, "bptt": 200}  # 2 chunks per epoch of the 6,000-character corpus
    result = charrnn.train(corpus_file, out=tmp_path / "a", max_steps=110, val_fraction=0.3, **settings)
    assert result.steps == 110 and result.epochs == 55.0  # past the default bound of 50 epochs
    bounded = charrnn.train(corpus_file, out=tmp_path / "b", max_steps=60, epochs=2, val_fraction=0.3, **settings)
    assert bounded.stop_reason == "epochs" and bounded.epochs == 2.0


def test_seq2seq_max_steps_without_epochs_runs_all_steps(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"ein hund {i}\ta dog {i}\n" for i in range(40)))
    result = charrnn.train(
        pairs,
        kind="seq2seq",
        out=tmp_path / "s",
        max_steps=45,
        batch_size=16,
        hidden=16,
        embed=8,
        threads=1,
        device="cpu",
    )
    assert result.steps == 45  # 3 batches per epoch: the default 30 epochs would have stopped at 90 only


def test_run_killed_before_its_first_evaluation_can_be_sampled(
    tmp_path: Path, corpus_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    charrnn.train(corpus_file, out=run, max_steps=6, **TINY_LM)
    (run / WEIGHTS_FILE).unlink()  # as if killed before the first evaluation wrote it
    loaded = charrnn.load(run)
    assert loaded.note is not None and "step 6" in loaded.note and "resume.safetensors" in loaded.note
    code, out, err = cli(["sample", run, "-n", "20", "--seed", "1"], capsys)
    assert code == 0 and out.strip() and "note:" in err and "step 6" in err
    code, out, err = cli(["score-sentence", run, "To be.", "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["n_tokens"] == 7 and "step 6" in err


def test_library_resume_checks_the_config_it_is_given(tmp_path: Path, corpus_file: Path) -> None:
    """The engine itself refuses a resume config that changed a fixed setting, and records allowed changes."""
    from charrnn.lm.run import read_config
    from charrnn.lm.training import train_language_model

    run = tmp_path / "run"
    charrnn.train(corpus_file, out=run, max_steps=4, **TINY_LM)
    changed = read_config(run)
    changed.training.bptt = 32
    with pytest.raises(CharRNNError, match="--bptt cannot change when resuming"):
        train_language_model(changed, run, resume=True)
    allowed = read_config(run)
    allowed.training.max_steps = 6
    assert train_language_model(allowed, run, resume=True).steps == 6
    assert saved_training(run)["max_steps"] == 6


def test_resume_with_max_time_says_how_long_and_where_the_learning_rate_goes(
    tmp_path: Path, corpus_file: Path
) -> None:
    """--max-time counts the session: the header says "training 2:30 more (... in all)", and the cosine
    schedule's jump back up is announced with both learning rates."""
    from rich.console import Console

    from charrnn.cli.display import RichReporter

    run = tmp_path / "run"
    charrnn.train(corpus_file, out=run, max_time=0.01, log_every=1, eval_every=1000, **TINY_LM)
    last_lr = [r["lr"] for r in read_metrics(run) if "lr" in r][-1]
    total = int(charrnn.load(run).info()["seconds_trained"] + 150)
    console = Console(width=80, file=__import__("io").StringIO(), force_terminal=False)
    reporter = RichReporter(console=console)
    charrnn.train(resume=run, max_time=2.5, reporter=reporter, should_stop=lambda: True)
    header = " ".join(console.file.getvalue().split())
    assert f"training 2:30 more ({total // 60}:{total % 60:02d} in all)" in header
    assert "max_time 0.01 -> 2.5" not in header  # read as "30 seconds more"
    assert f"the cosine schedule is stretched over the new total: learning rate {last_lr:.2g} → " in header
