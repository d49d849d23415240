"""One writer per run directory, and --overwrite as a transaction that leaves the old run intact on any failure."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from charrnn.core import rundir, runwriter
from charrnn.core.errors import CharRNNError
from charrnn.lm.run import LanguageModelRun
from tests.support import TINY_FLAGS, run_cli, snapshot, write_corpus

TRAIN = ["--max-steps", "2", "--eval-every", "2", *TINY_FLAGS]


def siblings(directory: Path) -> list[str]:
    """Names beside `directory` that an --overwrite transaction may leave (it must not)."""
    return sorted(
        p.name for p in directory.parent.iterdir() if ".charrnn-new" in p.name or ".charrnn-old" in p.name
    )


def corpus_of(run: Path) -> str:
    return json.loads((run / rundir.CONFIG_FILE).read_text())["corpus"]


# --- the lock -----------------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_in_one_line_naming_the_holder(run: Path) -> None:
    with runwriter.hold(run, create=False):
        before = snapshot(run)
        for args in (
            ["train", "--resume", str(run), "--max-steps", "6"],
            ["train", corpus_of(run), "--out", str(run), "--overwrite", *TRAIN],
        ):
            result = run_cli(args)
            assert result.code == 1 and "Traceback" not in result.stderr
            line = result.stderr.strip().splitlines()[-1]
            assert line.startswith(f"charrnn: error: run {run} is being trained by process {os.getpid()} since ")
            assert line.endswith("wait for it or use another --out.")
        assert snapshot(run) == before
        assert run_cli(["sample", str(run), "--length", "5"]).code == 0  # readers take no lock
    # released with the block: the next writer goes ahead
    assert run_cli(["train", "--resume", str(run), "--max-steps", "6"]).code == 0


def test_a_lock_dies_with_its_holder(run: Path) -> None:
    lease = runwriter.Lease(run)
    with pytest.raises(CharRNNError, match="is being trained by process"):
        runwriter.Lease(run)
    lease.release()  # what the OS does when the holding process is killed
    runwriter.Lease(run).release()


RACE_OPTIONS = {"max_steps": 3, "eval_every": 3, "log_every": 1, "hidden": 8, "embed": 8, "layers": 1}


def _race(corpus: str, out: str, go, results) -> None:  # in a forked child
    from charrnn.api import train

    go.wait()
    try:
        train(corpus, out=out, batch_size=2, bptt=8, threads=1, **RACE_OPTIONS)
        results.put("won")
    except CharRNNError as exc:
        results.put(str(exc))


def test_two_processes_racing_for_one_run_directory_have_exactly_one_winner(tmp_path: Path) -> None:
    from charrnn.api import train

    corpus = str(write_corpus(tmp_path, chars=600))
    train(corpus, out=tmp_path / "warm", batch_size=2, bptt=8, threads=1, **RACE_OPTIONS)  # forks start warm
    context = multiprocessing.get_context("fork")
    for round_ in range(20):  # the 20 rounds
        out = tmp_path / f"race{round_}"
        go, results = context.Event(), context.Queue()
        racers = [context.Process(target=_race, args=(corpus, str(out), go, results)) for _ in range(2)]
        for racer in racers:
            racer.start()
        go.set()
        outcomes = sorted(results.get(timeout=60) for _ in racers)
        for racer in racers:
            racer.join(timeout=60)
        assert outcomes[-1] == "won" and outcomes[0] != "won", outcomes
        assert "is being trained by process" in outcomes[0] or "already holds a run" in outcomes[0], outcomes
        steps = [r["step"] for r in rundir.read_metrics(out) if "train_loss" in r]
        assert steps == [1, 2, 3]  # one writer's records, none twice
        assert LanguageModelRun.load(out).sample(length=5, seed=1)  # the run is whole


# --- --overwrite as a transaction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        ["--level", "subword"],  # no --vocab-size
        ["--bptt", "5000"],  # more than the corpus holds
        ["--hidden", "0"],
    ],
)
def test_overwrite_failing_a_check_leaves_the_old_run_byte_identical(run: Path, change: list[str]) -> None:
    before = snapshot(run)
    result = run_cli(["train", corpus_of(run), "--out", str(run), "--overwrite", *TRAIN, *change])
    assert result.code != 0 and "charrnn: error:" in result.stderr and "internal error" not in result.stderr
    assert snapshot(run) == before and siblings(run) == []


def test_overwrite_with_a_missing_or_too_short_corpus_leaves_the_old_run(run: Path, tmp_path: Path) -> None:
    before = snapshot(run)
    (tmp_path / "short.txt").write_text("ab\n")
    for corpus in (tmp_path / "missing.txt", tmp_path / "short.txt"):
        result = run_cli(["train", str(corpus), "--out", str(run), "--overwrite", *TRAIN])
        assert result.code != 0 and "internal error" not in result.stderr, result.stderr
        assert snapshot(run) == before and siblings(run) == []


@pytest.mark.parametrize("failing", ["save_resume_state", "rename", "interrupt"])
def test_overwrite_failing_while_writing_the_new_run_leaves_the_old_run(
    run: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    from charrnn.core import engine

    before = snapshot(run)
    if failing == "save_resume_state":

        def disk_full(*args, **kwargs) -> None:
            raise CharRNNError("Could not write resume.safetensors (disk full)")

        monkeypatch.setattr(engine, "save_resume_state", disk_full)
    else:
        real_rename = os.rename

        def rename(source, target) -> None:
            if Path(target).name == "run" and Path(source).name.startswith(".run.charrnn-new-"):
                raise KeyboardInterrupt if failing == "interrupt" else OSError(28, "No space left on device")
            real_rename(source, target)

        monkeypatch.setattr(runwriter.os, "rename", rename)
    result = run_cli(["train", corpus_of(run), "--out", str(run), "--overwrite", *TRAIN])
    assert result.code == (130 if failing == "interrupt" else 1), result.stderr
    assert "internal error" not in result.stderr
    assert snapshot(run) == before and siblings(run) == []
    monkeypatch.undo()
    assert run_cli(["train", corpus_of(run), "--out", str(run), "--overwrite", *TRAIN]).code == 0


def test_overwrite_replaces_the_run_whole(run: Path) -> None:
    old = snapshot(run)
    result = run_cli(["train", corpus_of(run), "--out", str(run), "--overwrite", *TRAIN, "--hidden", "16"])
    assert result.code == 0, result.stderr
    assert siblings(run) == []
    new = snapshot(run)
    assert new[rundir.CONFIG_FILE] != old[rundir.CONFIG_FILE]
    assert json.loads(new[rundir.CONFIG_FILE])["model"]["hidden"] == 16
    assert {r["step"] for r in rundir.read_metrics(run)} <= {1, 2}  # none of the old run's records
    assert LanguageModelRun.load(run).sample(length=5, seed=1)


def test_a_folder_is_a_run_only_with_charrnns_marker(tmp_path: Path, run: Path) -> None:
    corpus = corpus_of(run)
    own = tmp_path / "mine"
    own.mkdir()
    (own / "config.json").write_text('{"format_version": 2, "hidden": 3}')
    (own / "tokenizer.json").write_text("{}")
    (own / "model.safetensors").write_bytes(b"mine")
    before = snapshot(own)
    for extra in ([], ["--overwrite"]):
        result = run_cli(["train", corpus, "--out", str(own), *TRAIN, *extra])
        assert result.stderr.strip().endswith("is not a charrnn run directory; choose another --out.")
    assert snapshot(own) == before
    old_format = Path(__file__).parent / "data" / "old_runs" / "lm-char" / "run" / rundir.CONFIG_FILE
    assert rundir.is_run_config(old_format) and rundir.is_run_config(run / rundir.CONFIG_FILE)
    assert not rundir.is_run_config(own / rundir.CONFIG_FILE)


def test_overwrite_refuses_a_run_holding_the_users_own_files(run: Path) -> None:
    (run / "notes.txt").write_text("my notes")
    before = snapshot(run)
    result = run_cli(["train", corpus_of(run), "--out", str(run), "--overwrite", *TRAIN])
    assert result.stderr.strip().endswith(
        "(notes.txt); --overwrite would delete them: move them out or choose another --out."
    )
    assert snapshot(run) == before


def test_a_run_that_cannot_start_leaves_no_out_behind(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    result = run_cli(["train", str(corpus), "--out", str(tmp_path / "new"), *TRAIN, "--bptt", "5000"])
    assert result.code == 1 and not (tmp_path / "new").exists()
