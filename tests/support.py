"""What the tests share: tiny corpora, the tiny run config and CLI flags, copying runs, running the CLI.

A plain module (not conftest.py) so that test modules and the subprocess helper scripts can import it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charrnn.core import rundir
from charrnn.core.config import TokenizerConfig
from charrnn.lm.config import LMTrainConfig, ModelConfig, RunConfig
from charrnn.lm.training import train_language_model

REPO_ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = REPO_ROOT / "corpora" / "tinyshakespeare.txt"


def tiny_text(chars: int = 3000) -> str:
    """The first `chars` or so characters of the bundled Tiny Shakespeare, ending at a line break."""
    with open(SHAKESPEARE, encoding="utf-8") as handle:
        text = handle.read(chars + 200)
    return text[: text.index("\n", chars) + 1]


def write_corpus(directory: Path, chars: int = 3000, name: str = "corpus.txt") -> Path:
    """Write a tiny real corpus into `directory` and return its path."""
    path = Path(directory) / name
    path.write_text(tiny_text(chars), encoding="utf-8")
    return path


MODEL_FIELDS = {field.name for field in dataclasses.fields(ModelConfig)}


def tiny_config(corpus: Path | str, level: str = "char", **settings: Any) -> RunConfig:
    """A run configuration small enough to train a few dozen steps in about a second on one CPU thread.

    `settings` override the defaults below; a ModelConfig field (hidden, dropout, ...) goes to the model,
    anything else to the training settings.
    """
    model = {"cell": "lstm", "embed": 16, "hidden": 32, "layers": 2, "dropout": 0.1}
    training = {
        "batch_size": 4,
        "bptt": 16,
        "max_steps": 20,
        "eval_every": 10,
        "save_every": 10,
        "log_every": 1,
        "threads": 1,
        "seed": 7,
        "eval_tokens": None,
        "device": "cpu",
        "schedule": "plateau",  # tests pin it: the default (cosine) depends on the step budget
        "warmup_steps": 0,  # and the default warmup (100 steps) would scale every step of a tiny run
    }
    for name, value in settings.items():
        (model if name in MODEL_FIELDS else training)[name] = value
    return RunConfig(
        tokenizer=TokenizerConfig(level=level, vocab_size=300 if level == "subword" else None),
        model=ModelConfig(**model),
        training=LMTrainConfig(**training),
        corpus=str(corpus),
    )


def train_tiny_run(root: Path) -> Path:
    """Train the tiny run the tests share (4 steps on root/corpus.txt, 600 characters) into root/run; returns it."""
    corpus = write_corpus(root, chars=600)
    train_language_model(tiny_config(corpus, max_steps=4), root / "run")
    return root / "run"


def cli_flags(settings: dict[str, Any]) -> list[str]:
    """The command-line spelling of keyword settings: {"batch_size": 4} -> ["--batch-size", "4"]."""
    return [part for name, value in settings.items() for part in (f"--{name.replace('_', '-')}", str(value))]


# The tiny models of the CLI and API tests, as keyword settings and as flags (a later flag overrides one here).
TINY_LM = {"embed": 8, "hidden": 16, "layers": 1, "batch_size": 4, "bptt": 16, "threads": 1, "device": "cpu"}
TINY_FLAGS = cli_flags(TINY_LM)
TINY_SEQ2SEQ_FLAGS = cli_flags({"embed": 16, "hidden": 32, "batch_size": 16, "threads": 1, "seed": 3})


def copy_run(run_dir: Path, target: Path) -> Path:
    """A private copy of a run directory, for a test that changes or damages it."""
    return Path(shutil.copytree(run_dir, target, copy_function=shutil.copyfile))


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (but the lock file, which names its last holder) and its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != rundir.LOCK_FILE
    }


@dataclass
class CliResult:
    """Exit code and captured output of one CLI run."""

    code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], stdin: str = "") -> CliResult:
    """Run `charrnn.cli.main(args)` in this process, capturing its exit code, stdout and stderr."""
    from charrnn.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(args)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdin = old_stdin
    return CliResult(code, out.getvalue(), err.getvalue())


def subprocess_env() -> dict[str, str]:
    """Environment for a charrnn subprocess that imports this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    """Start `python -m charrnn.cli ARGS` as a subprocess with pipes for its output."""
    return subprocess.Popen(
        [sys.executable, "-m", "charrnn.cli", *args],
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
