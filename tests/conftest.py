"""Shared fixtures: tiny corpora and tiny run configurations that train in seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from charrnn.core.config import TokenizerConfig
from charrnn.lm.config import LMTrainConfig, ModelConfig, RunConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = REPO_ROOT / "corpora" / "tinyshakespeare.txt"

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shakespeare_head() -> str:
    """The first ~6,000 characters of the bundled Tiny Shakespeare."""
    text = SHAKESPEARE.read_text(encoding="utf-8")
    return text[: text.index("\n", 6000) + 1]


@pytest.fixture
def corpus_file(tmp_path: Path, shakespeare_head: str) -> Path:
    """A small real corpus on disk."""
    path = tmp_path / "corpus.txt"
    path.write_text(shakespeare_head, encoding="utf-8")
    return path


def tiny_config(corpus: Path | str, level: str = "char", **training) -> RunConfig:
    """A run configuration small enough to train a few dozen steps in about a second."""
    train = {
        "batch_size": 4,
        "bptt": 16,
        "max_steps": 20,
        "eval_every": 10,
        "save_every": 10,
        "threads": 1,
        "seed": 7,
        "eval_tokens": None,
        "schedule": "plateau",  # tests pin it: the default (cosine) depends on the step budget
        "warmup_steps": 0,  # and the default warmup (100 steps) would scale every step of a tiny run
    }
    train.update(training)
    return RunConfig(
        tokenizer=TokenizerConfig(level=level, vocab_size=300 if level == "subword" else None),
        model=ModelConfig(cell="lstm", embed=16, hidden=32, layers=2, dropout=0.1),
        training=LMTrainConfig(**train),
        corpus=str(corpus),
    )
