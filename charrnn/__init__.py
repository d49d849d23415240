"""charrnn: recurrent language models (char, word, subword), seq2seq with attention, and labelled text.

import charrnn
run = charrnn.load("checkpoints/tinyshakespeare-char")
run.sample(prime="ROMEO:", length=200)
charrnn.train("my.txt", level="word", max_time=5)

`import charrnn` loads no model code (nor torch): each name below is imported when first used.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from charrnn.core import openmp  # imports no torch
from charrnn.core.version import __version__

if "torch" not in sys.modules:  # OpenMP reads its wait policy once, when torch loads (docs/performance.md)
    _policy = openmp.wait_policy(os.environ, openmp.busy_at_start())
    if _policy is not None:  # a busy machine: waiting threads sleep instead of spinning
        os.environ["OMP_WAIT_POLICY"] = _policy

if TYPE_CHECKING:
    from charrnn.api import load, train
    from charrnn.core.errors import CharRNNError
    from charrnn.core.scoring import SentenceScore
    from charrnn.core.state import Reporter, TrainResult
    from charrnn.labelled.run import ClassifierRun, ConditionalRun
    from charrnn.lm.run import LanguageModelRun
    from charrnn.seq2seq.run import TranslationRun

_HOMES = {  # public name -> the module that defines it
    "load": "charrnn.api",
    "train": "charrnn.api",
    "CharRNNError": "charrnn.core.errors",
    "SentenceScore": "charrnn.core.scoring",
    "Reporter": "charrnn.core.state",
    "TrainResult": "charrnn.core.state",
    "LanguageModelRun": "charrnn.lm.run",
    "TranslationRun": "charrnn.seq2seq.run",
    "ClassifierRun": "charrnn.labelled.run",
    "ConditionalRun": "charrnn.labelled.run",
}

__all__ = [
    "CharRNNError",
    "ClassifierRun",
    "ConditionalRun",
    "LanguageModelRun",
    "Reporter",
    "SentenceScore",
    "TrainResult",
    "TranslationRun",
    "__version__",
    "load",
    "train",
]


def __getattr__(name: str) -> Any:
    """The public name `name`, imported from its module on first use (PEP 562)."""
    if name not in _HOMES:
        raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
