"""charrnn: recurrent language models (char, word, subword) and seq2seq with attention.

import charrnn
run = charrnn.load("checkpoints/tinyshakespeare-char")
run.sample(prime="ROMEO:", length=200)
charrnn.train("my.txt", level="word", max_time=5)
"""

__version__ = "0.2.0"

import os  # noqa: E402
import sys  # noqa: E402

from charrnn.core import openmp  # noqa: E402  (imports no torch)

if "torch" not in sys.modules:  # OpenMP reads its wait policy once, when torch loads (docs/performance.md)
    _policy = openmp.wait_policy(os.environ, openmp.busy_at_start())
    if _policy is not None:  # a busy machine: waiting threads sleep instead of spinning
        os.environ["OMP_WAIT_POLICY"] = _policy

from charrnn.api import load, train  # noqa: E402
from charrnn.core.errors import CharRNNError  # noqa: E402
from charrnn.core.scoring import SentenceScore  # noqa: E402
from charrnn.core.state import Reporter, TrainResult  # noqa: E402
from charrnn.lm.run import LanguageModelRun  # noqa: E402
from charrnn.seq2seq.run import TranslationRun  # noqa: E402

__all__ = [
    "CharRNNError",
    "LanguageModelRun",
    "Reporter",
    "SentenceScore",
    "TrainResult",
    "TranslationRun",
    "__version__",
    "load",
    "train",
]
