"""Distributed data parallelism for real: 2 gloo processes under torchrun (via `charrnn train --nproc 2`) on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import charrnn
from charrnn.core.distributed import pop_nproc
from charrnn.core.errors import CharRNNError
from charrnn.core.rundir import read_metrics
from tests.support import REPO_ROOT, TINY_FLAGS, TINY_SEQ2SEQ_FLAGS, run_cli

CADENCE = ["--log-every", "1", "--eval-every", "3", "--save-every", "3", "--schedule", "constant"]


def train_args(corpus: Path, out: Path, batch_size: int, max_steps: int) -> list[str]:
    """`charrnn train` of the tiny model without dropout (each process would draw its own masks)."""
    tiny = [*TINY_FLAGS, "--bptt", "8", "--dropout", "0", *CADENCE]
    return [
        "train",
        str(corpus),
        "--out",
        str(out),
        *tiny,
        "--batch-size",
        str(batch_size),
        "--max-steps",
        str(max_steps),
    ]


def charrnn_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`python -m charrnn ARGS` in a process of its own, as a user starts `--nproc` runs; it must succeed."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CI": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "charrnn", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def one_process_run(corpus: Path, out: Path) -> dict[int, float]:
    """The train losses of the 9-step reference: one process of batch 4."""
    result = run_cli(train_args(corpus, out, batch_size=4, max_steps=9))
    assert result.code == 0, result.stderr
    return train_losses(out)


def train_losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["train_loss"] for r in read_metrics(run_dir) if "train_loss" in r}


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 6-step run of 2 processes x batch 2, started the way a user would: `charrnn train --nproc 2`."""
    root = tmp_path_factory.mktemp("ddp")
    corpus = root / "corpus.txt"
    corpus.write_text((REPO_ROOT / "corpora" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:20_000])
    done = charrnn_process([*train_args(corpus, root / "run2", batch_size=2, max_steps=6), "--nproc", "2"], root)
    assert done.stderr.count("training summary") == 1  # rank 0 alone reports
    return corpus, root / "run2"


def test_two_processes_of_batch_b_follow_one_process_of_batch_2b(two_process_run, tmp_path: Path) -> None:
    corpus, run2 = two_process_run
    reference, distributed = one_process_run(corpus, tmp_path / "run1"), train_losses(run2)
    assert sorted(distributed) == [1, 2, 3, 4, 5, 6]
    assert [distributed[s] for s in range(1, 7)] == pytest.approx([reference[s] for s in range(1, 7)], rel=1e-5)
    assert len(set(distributed.values())) == 6  # it really trained


def test_checkpoint_of_two_processes_samples_and_resumes_in_one(two_process_run, tmp_path: Path) -> None:
    corpus, run2 = two_process_run
    sampled = run_cli(["sample", str(run2), "-n", "30", "--seed", "1"])
    assert sampled.code == 0 and len(sampled.stdout.strip()) > 0, sampled.stderr
    result = charrnn.train(resume=run2, max_steps=9)  # one process now reads all 2 x 2 streams
    assert result.steps == 9
    want, got = one_process_run(corpus, tmp_path / "run1"), train_losses(run2)
    assert [got[s] for s in (7, 8, 9)] == pytest.approx([want[s] for s in (7, 8, 9)], rel=1e-5)


def test_nproc_flag_is_parsed_out_with_one_line_errors() -> None:
    assert pop_nproc(["train", "x.txt", "--nproc", "3", "--bptt", "8"]) == (["train", "x.txt", "--bptt", "8"], 3)
    assert pop_nproc(["train", "--nproc=2"]) == (["train"], 2)
    with pytest.raises(CharRNNError, match="whole number"):
        pop_nproc(["train", "--nproc", "two"])


def test_bad_flags_with_nproc_are_refused_before_any_process_starts(corpus_file: Path) -> None:
    result = run_cli(["train", str(corpus_file), "--nproc", "2", "--bptt", "0"])
    assert result.code == 1 and result.stderr.strip() == "charrnn: error: --bptt must be at least 1, got 0."


def test_seq2seq_trains_in_two_processes_and_resumes_in_one(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.tsv"
    lines = (REPO_ROOT / "corpora" / "multi30k-de-en-small.tsv").read_text(encoding="utf-8").splitlines()
    pairs.write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    run = tmp_path / "s2s"
    args = [
        "seq2seq",
        "train",
        str(pairs),
        "--out",
        str(run),
        "--nproc",
        "2",
        *TINY_SEQ2SEQ_FLAGS,
        "--batch-size",
        "4",
        "--max-steps",
        "4",
    ]
    charrnn_process([*args, "--eval-every", "2", "--save-every", "2", "--log-every", "1"], tmp_path)
    result = charrnn.train(resume=run, max_steps=6)  # one process keeps the global batches of 2 x 4 pairs
    assert result.steps == 6 and sorted(train_losses(run)) == [1, 2, 3, 4, 5, 6]
    translated = run_cli(["seq2seq", "translate", str(run), "ein Hund"])
    assert translated.code == 0, translated.stderr


def test_a_command_restarted_by_torchrun_resumes_its_run(corpus_file: Path, tmp_path: Path, monkeypatch) -> None:
    settings = {"batch_size": 2, "bptt": 8, "embed": 8, "hidden": 8, "layers": 1, "threads": 1, "eval_every": 2}
    charrnn.train(corpus_file, out=tmp_path / "run", max_steps=2, save_every=2, **settings)
    with pytest.raises(CharRNNError, match="overwrite"):  # a second start of the same command is refused...
        charrnn.train(corpus_file, out=tmp_path / "run", max_steps=4, **settings)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # ...unless torchrun restarted it after a failure
    result = charrnn.train(corpus_file, out=tmp_path / "run", max_steps=4, **settings)
    assert result.steps == 4
    assert [r["step"] for r in read_metrics(tmp_path / "run") if "val_loss" in r] == [
        2,
        4,
    ]  # continued, not restarted


def test_a_classifier_trains_in_two_processes_as_in_one(tmp_path: Path) -> None:
    """2 processes x 4 examples follow 1 process x 8 step for step (no dropout); the run resumes in one process."""
    names = REPO_ROOT / "tests" / "data" / "names"
    flags = ["--task", "classify", "--embed", "8", "--hidden", "8", "--dropout", "0", "--threads", "1", *CADENCE]
    one = run_cli(
        ["train", str(names), "--out", str(tmp_path / "one"), "--batch-size", "8", "--max-steps", "4", *flags]
    )
    assert one.code == 0, one.stderr
    two = [*flags, "--batch-size", "4", "--max-steps", "4", "--nproc", "2"]
    charrnn_process(["train", str(names), "--out", str(tmp_path / "two"), *two], tmp_path)
    reference, distributed = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert [distributed[s] for s in range(1, 5)] == pytest.approx([reference[s] for s in range(1, 5)], rel=1e-5)
    assert (
        charrnn.train(resume=tmp_path / "two", max_steps=6).steps == 6
    )  # one process keeps the global batch of 8
