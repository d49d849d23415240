"""charrnn: recurrent language models (char, word, subword) and seq2seq with attention."""

__version__ = "0.1.0"
FORMAT_VERSION = 1
