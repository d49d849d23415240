"""charrnn: recurrent language models (char, word, subword) and seq2seq with attention.

import charrnn
run = charrnn.load("checkpoints/tinyshakespeare-char")
run.sample(prime="ROMEO:", length=200)
charrnn.train("my.txt", level="word", max_time=5)
"""

__version__ = "0.2.0"

import os  # noqa: E402
import sys  # noqa: E402

if "torch" not in sys.modules:  # OpenMP reads this once, when torch loads: waiting threads sleep, not spin,
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # so a busy machine does not stall them (README "Threads")

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
