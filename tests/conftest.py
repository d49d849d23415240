"""Shared fixtures: tiny corpora and one tiny trained run (the helpers behind them are in tests/support.py)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.support import copy_run, snapshot, tiny_text, train_tiny_run

torch.set_num_threads(1)

# The user cache folder (token caches, --precision auto decisions) of this test session, subprocesses
# included: never the real ~/.cache. A test that looks at the cache sets its own with monkeypatch.
_USER_CACHE = tempfile.TemporaryDirectory(prefix="charrnn-test-cache-")
os.environ["CHARRNN_CACHE"] = _USER_CACHE.name


@pytest.fixture(scope="session")
def shakespeare_head() -> str:
    """The first ~6,000 characters of the bundled Tiny Shakespeare."""
    return tiny_text(6000)


@pytest.fixture
def corpus_file(tmp_path: Path, shakespeare_head: str) -> Path:
    """A small real corpus on disk."""
    path = tmp_path / "corpus.txt"
    path.write_text(shakespeare_head, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tiny run of `train_tiny_run`, shared by the whole session: tests only read it (one that changes the run
    takes the `run` fixture, a private copy; one that changes the corpus trains its own)."""
    run_dir = train_tiny_run(tmp_path_factory.mktemp("trained"))
    corpus = run_dir.parent / "corpus.txt"  # and its token caches beside it, which later runs may add to

    def files() -> tuple:
        return snapshot(run_dir), corpus.read_bytes(), corpus.stat().st_mtime_ns  # a new mtime fails a resume

    before = files()
    yield run_dir
    assert files() == before, "a test changed the shared trained run or its corpus; copy the run first"


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    """A private copy of the trained run, free to change or damage."""
    return copy_run(trained_run, tmp_path / "run")
