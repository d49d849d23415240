"""SIGKILL at random moments and in the middle of saves: the run directory always loads and resumes."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charrnn.core import rundir
from charrnn.core.optim import make_optimizer
from charrnn.core.resume import load_resume_state
from charrnn.core.sampling import SampleSettings
from charrnn.lm.model import LanguageModel
from charrnn.lm.run import LanguageModelRun, read_config
from charrnn.lm.sampling import generate
from tests.support import TINY_FLAGS, run_cli, subprocess_env, write_corpus

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL and /proc")

# Runs the CLI; in "fsync" or "replace" mode it SIGKILLs itself in the middle of its NTH save of
# resume.safetensors: after the temporary file is written (fsync) or just before it replaces the old one.
DRIVER = """
import os, signal, sys
mode, nth, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
saves = 0
real_fsync, real_replace = os.fsync, os.replace

def maybe_die(name):
    global saves
    if ".resume.safetensors." in name:
        saves += 1
        if saves >= nth:
            os.kill(os.getpid(), signal.SIGKILL)

def fsync(fd):
    if mode == "fsync":
        maybe_die(os.readlink(f"/proc/self/fd/{fd}"))
    real_fsync(fd)

def replace(src, dst):
    if mode == "replace":
        maybe_die(str(src))
    real_replace(src, dst)

os.fsync, os.replace = fsync, replace
from charrnn.cli import main
main(args)
"""


def start(mode: str, args: list[str], cwd: Path, nth: int = 3) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, mode, str(nth), *args],
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def logged_steps(run: Path) -> list[int]:
    return [r["step"] for r in rundir.read_metrics(run) if "train_loss" in r]


def wait_for_step(run: Path, step: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s >= step for s in logged_steps(run)):
            return
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.01)
    raise AssertionError(f"no step {step} within {timeout} s")


def check_loads(run: Path) -> int:
    """Load everything a later command needs; return the step of the resumable checkpoint."""
    config = read_config(run)
    tokenizer = rundir.read_tokenizer(run)
    model = LanguageModel(config.model)
    point = load_resume_state(run, model, make_optimizer(model, config.training), torch.device("cpu"))
    state, hidden = point.state, point.carried.get("hidden.0")
    assert hidden is not None
    loaded = LanguageModelRun.load(run)
    tokenizer, best = loaded.tokenizer, loaded.model
    ids = generate(best, tokenizer, "", SampleSettings(length=8, seed=0))[0]
    assert len(ids) == 8
    return state.step


def test_sigkill_at_random_moments_and_during_saves_never_breaks_the_run(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    run = tmp_path / "run"
    steps = ["--max-steps", "1000000"]
    options = [*TINY_FLAGS, "--save-every", "1", "--eval-every", "2", "--log-every", "1"]
    rng = random.Random(4)
    checkpoint_step = 0
    for round_, mode in enumerate(["random", "fsync", "random", "replace"]):
        args = ["train", str(corpus), "--out", str(run), *steps, *options] if round_ == 0 else []
        args = args or ["train", "--resume", str(run), *steps, "--threads", "1"]
        process = start(mode, args, tmp_path)
        if mode == "random":
            wait_for_step(run, checkpoint_step + 3, process)  # past an evaluation: model.safetensors exists
            time.sleep(rng.uniform(0.0, 0.15))
            process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=60)
        assert process.returncode == -signal.SIGKILL, err
        if mode != "random":
            assert list(run.glob(".resume.safetensors.*.tmp")), "the kill should have hit the middle of a save"

        step = check_loads(run)
        assert step >= checkpoint_step  # never behind the checkpoint the round started from
        assert step >= max(logged_steps(run)) - 1  # at most the step being saved was lost
        checkpoint_step = step

    final = checkpoint_step + 3
    result = run_cli(["train", "--resume", str(run), "--max-steps", str(final), "--threads", "1"])
    assert result.code == 0, result.stderr
    assert not list(run.glob(".*.tmp"))
    assert logged_steps(run) == list(range(1, final + 1))  # every step once, none twice, none missing
    assert check_loads(run) == final
