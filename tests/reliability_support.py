"""Helpers shared by the reliability tests: tiny corpora and configs, running the CLI in and out of process."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from charrnn.core.config import TokenizerConfig
from charrnn.lm.config import LMTrainConfig, ModelConfig, RunConfig

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


def tiny_config(corpus: Path | str, **training) -> RunConfig:
    """A char-level run small enough to take a few milliseconds per step on one CPU thread."""
    settings = {
        "batch_size": 4,
        "bptt": 16,
        "max_steps": 12,
        "eval_every": 4,
        "save_every": 5,
        "log_every": 1,
        "threads": 1,
        "seed": 11,
        "eval_tokens": None,
        "device": "cpu",
        "warmup_steps": 0,  # the default warmup (100 steps) would scale every step of a tiny run
    }
    settings.update(training)
    return RunConfig(
        tokenizer=TokenizerConfig(level="char"),
        model=ModelConfig(cell="lstm", embed=16, hidden=24, layers=2, dropout=0.2),
        training=LMTrainConfig(**settings),
        corpus=str(corpus),
    )


TINY_TRAIN_ARGS = [
    "--hidden", "24", "--embed", "16", "--layers", "2", "--dropout", "0.2",
    "--batch-size", "4", "--bptt", "16", "--threads", "1", "--device", "cpu", "--seed", "11",
]  # fmt: skip


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
