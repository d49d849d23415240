"""Misuse of run directories and streams: no writes outside the run, no blocking on FIFOs, bounded reads,
and one-line errors (never "internal error") for every reproduction of issue 10."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from charrnn.core import rundir
from tests.support import run_cli, subprocess_env, write_corpus


def one_line(result, *fragments: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.code == 1, result
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert lines[-1].startswith("charrnn: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def cli(args: list[str], cwd: Path, timeout: float = 60, **streams) -> subprocess.CompletedProcess:
    """Run `python -m charrnn.cli ARGS` in a subprocess (for real file descriptors) with a time limit."""
    return subprocess.run(
        [sys.executable, "-m", "charrnn.cli", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output="stdout" not in streams,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        **streams,
    )


# --- no writes outside the run ------------------------------------------------------------------------------


def test_a_dangling_metrics_link_is_refused_and_nothing_is_written_through_it(run: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.jsonl"
    (run / rundir.METRICS_FILE).unlink()
    (run / rundir.METRICS_FILE).symlink_to(outside)
    before = (run / rundir.RESUME_FILE).read_bytes()
    one_line(run_cli(["train", "--resume", str(run), "--max-steps", "8"]), "metrics.jsonl is a symbolic link")
    assert not outside.exists() and (run / rundir.RESUME_FILE).read_bytes() == before


def test_a_metrics_link_into_a_fifo_never_blocks_resume(run: Path, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (run / rundir.METRICS_FILE).unlink()
    (run / rundir.METRICS_FILE).symlink_to(tmp_path / "pipe")
    one_line(run_cli(["train", "--resume", str(run), "--max-steps", "8"]), "symbolic link")
    (run / rundir.METRICS_FILE).unlink()
    os.mkfifo(run / rundir.METRICS_FILE)
    one_line(run_cli(["train", "--resume", str(run), "--max-steps", "8"]), "FIFO")


def test_appending_metrics_never_follows_a_link(run: Path, tmp_path: Path) -> None:
    (run / rundir.METRICS_FILE).unlink()
    (run / rundir.METRICS_FILE).symlink_to(tmp_path / "elsewhere.jsonl")
    with pytest.raises(rundir.CharRNNError, match="symbolic link"):
        rundir.append_metrics(run, {"step": 1})
    assert not (tmp_path / "elsewhere.jsonl").exists()


def test_fifo_weights_and_config_are_refused_not_waited_on(run: Path) -> None:
    (run / rundir.WEIGHTS_FILE).unlink()
    os.mkfifo(run / rundir.WEIGHTS_FILE)
    one_line(run_cli(["sample", str(run), "--length", "5"]), "FIFO", "regular files")
    (run / rundir.CONFIG_FILE).unlink()
    os.mkfifo(run / rundir.CONFIG_FILE)
    one_line(run_cli(["sample", str(run), "--length", "5"]))


def test_info_and_runs_return_at_once_when_the_weights_are_a_fifo(run: Path) -> None:
    """They read safetensors headers through the one regular-file-only reader: the FIFO is skipped, not opened."""
    (run / rundir.WEIGHTS_FILE).unlink()
    os.mkfifo(run / rundir.WEIGHTS_FILE)
    for args in (["info", str(run), "--json"], ["runs", str(run.parent), "--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "charrnn.cli", *args],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,  # a blocking open() of the FIFO would wait here for ever
        )
        assert done.returncode == 0, done.stderr
        facts = json.loads(done.stdout)
        facts = facts if isinstance(facts, dict) else facts[0]
        assert facts["kind"] == "lm" and facts["parameters"] > 0  # counted from resume.safetensors' header
        assert facts["best_weights_step"] is None


# --- bounded reads ------------------------------------------------------------------------------------------


def test_dev_zero_as_a_corpus_is_refused_at_once(tmp_path: Path) -> None:
    one_line(run_cli(["train", "/dev/zero", "--out", str(tmp_path / "r")]), "is not a regular file")
    assert not (tmp_path / "r").exists()


def test_a_sparse_weights_file_is_refused_from_its_header(run: Path) -> None:
    path = run / rundir.WEIGHTS_FILE
    with open(path, "r+b") as handle:  # 3 GB of holes after a valid file: the header no longer fits the size
        handle.truncate(3 << 30)
    one_line(run_cli(["sample", str(run), "--length", "5"]), "not a valid safetensors file")


def test_weights_of_the_wrong_shape_are_refused_before_their_data_is_read(run: Path) -> None:
    config = json.loads((run / rundir.CONFIG_FILE).read_text())
    config["model"]["hidden"] = 12000  # 2.4 GB of LSTM weights if built and read
    (run / rundir.CONFIG_FILE).write_text(json.dumps(config))
    one_line(run_cli(["sample", str(run), "--length", "5"]), "has shape", "config.json implies")


def test_a_model_bigger_than_memory_is_refused_with_how_much_it_needs(run: Path) -> None:
    config = json.loads((run / rundir.CONFIG_FILE).read_text())
    config["model"].update(hidden=65536, layers=64)
    (run / rundir.CONFIG_FILE).write_text(json.dumps(config))
    line = one_line(run_cli(["sample", str(run), "--length", "5"]), "parameters", "GiB of memory", "is available")
    assert "2,18" in line  # 2.18 trillion parameters, counted without allocating them


# --- the standard streams -----------------------------------------------------------------------------------


def test_full_or_closed_stdout_and_closed_stdin_are_one_line(trained_run: Path, tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        result = cli(["sample", str(trained_run), "--length", "5"], tmp_path, stdout=full)
    assert result.returncode == 1 and result.stderr.strip() == (
        "charrnn: error: cannot write output: No space left on device; check where standard output goes "
        "(a full disk?)."
    )
    from charrnn.cli import main

    for stream, args in (
        ("stdout", ["sample", str(trained_run), "--length", "5"]),
        ("stdin", ["score-sentence", str(trained_run)]),
    ):
        err = io.StringIO()
        saved = sys.stdin, sys.stdout
        setattr(sys, stream, None)  # what Python sets when the descriptor is closed at start-up
        try:
            with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
                main(args)
        finally:
            sys.stdin, sys.stdout = saved
        assert exit_info.value.code == 1 and "internal error" not in err.getvalue()
        expected = (
            "cannot write output: standard output is closed" if stream == "stdout" else "No sentence to score"
        )
        assert err.getvalue().startswith(f"charrnn: error: {expected}"), err.getvalue()


# --- none of the issue's reproductions is an internal error --------------------------------------------------

DAMAGED_CONFIGS = [
    ("model", "hidden", "64"),
    ("model", "hidden", 64.5),
    ("model", "hidden", 1e30),
    ("model", "dropout", "x"),
    (None, "corpus", 5),
    ("model", "vocab_size", -5),
    ("model", "embed", 10**8),
    ("model", "layers", 10**6),
    ("tokenizer", "level", ["char"]),
    (None, "format_version", True),
]


def test_no_reproduction_of_issue_10_is_an_internal_error(run: Path, tmp_path: Path) -> None:
    original = (run / rundir.CONFIG_FILE).read_text()
    for part, key, value in DAMAGED_CONFIGS:
        config = json.loads(original)
        (config[part] if part else config)[key] = value
        (run / rundir.CONFIG_FILE).write_text(json.dumps(config))
        one_line(run_cli(["sample", str(run), "--length", "5"]), str(run))
    deep = "[" * 100_000 + "]" * 100_000
    (run / rundir.CONFIG_FILE).write_text(deep)
    one_line(run_cli(["sample", str(run), "--length", "5"]), "config.json")
    (run / rundir.CONFIG_FILE).write_text(original)
    tokenizer = json.loads((run / "tokenizer.json").read_text())
    tokenizer["units"][5] = ["a", "b"]
    (run / "tokenizer.json").write_text(json.dumps(tokenizer))
    one_line(run_cli(["sample", str(run), "--length", "5"]), "tokenizer")
    corpus = str(write_corpus(tmp_path, chars=600))
    for flags, fragment in (
        (["--weight-decay", "-1"], "--weight-decay"),
        (["--weight-decay", "nan"], "--weight-decay"),
        (["--seed", str(2**70)], "--seed"),
        (["--hidden", str(10**9)], "--hidden"),
    ):
        one_line(run_cli(["train", corpus, "--out", str(tmp_path / "new"), *flags]), fragment)


@pytest.mark.parametrize("forgery", ["size", "dtype", "mt19937", "python"])
def test_a_forged_random_state_in_the_resume_file_is_one_line(run: Path, forgery: str) -> None:
    tensors, metadata = rundir.load_tensors(run / rundir.RESUME_FILE)
    state = tensors["rng.torch"]
    if forgery == "size":
        tensors["rng.torch"] = state[:7].clone()
    elif forgery == "dtype":
        tensors["rng.torch"] = state.float()
    elif forgery == "mt19937":
        tensors["rng.torch"] = torch.full_like(state, 255)
    else:
        metadata["python_rng"] = [3, [1, 2], None]
    rundir.save_tensors(run / rundir.RESUME_FILE, tensors, metadata)
    one_line(run_cli(["train", "--resume", str(run), "--max-steps", "8"]), "random-number state", "invalid")


def test_nan_weights_are_refused_in_one_line(run: Path) -> None:
    tensors, metadata = rundir.load_tensors(run / rundir.WEIGHTS_FILE)
    tensors[rundir.EMBEDDING_KEY][0, 0] = float("nan")
    rundir.save_tensors(run / rundir.WEIGHTS_FILE, tensors, metadata)
    one_line(run_cli(["sample", str(run), "--length", "5"]), "NaN or infinite", "restore them")
