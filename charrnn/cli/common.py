"""What several command modules share: the help of the scoring options, and reading sentences to work on."""

from __future__ import annotations

import sys
from pathlib import Path

from charrnn.cli.display import err_console
from charrnn.core.errors import CharRNNError

SCORING_PRECISION_HELP = "fp32 (exact, the default) or bf16 (faster where the hardware has bf16; approximate)."
OOV_HELP = (
    "How <unk> (out-of-vocabulary) tokens count: penalty (log P(<unk>) + --oov-logprob), "
    "skip (left out of log P and of the token count) or include (as the model scores <unk>)."
)
OOV_LOGPROB_HELP = "The natural-log penalty per <unk> for --oov penalty (default: log(1/vocabulary size))."


SENTENCE_INPUT_BYTES = 16 << 20  # the most text of sentences read from --file or stdin


def read_sentences(sentences: list[str] | None, file: Path | None, what: str) -> list[str]:
    """Non-blank lines from arguments, --file, or stdin (at most 16 MiB); a note on stderr for blank lines of a file."""
    from charrnn.core.text import read_stdin_text, read_text

    texts = list(sentences or [])
    skipped = 0
    if file is not None:
        lines = read_text(file, limit=SENTENCE_INPUT_BYTES).split("\n")
        texts += [line for line in lines if line.strip()]
        skipped = sum(1 for line in lines[:-1] if not line.strip()) if lines else 0
    elif not texts:  # lines on stdin; on a terminal, lines typed until Ctrl-D, as `cat` reads them
        if sys.stdin.isatty():
            err_console().print(f"Type sentences to {what}, one per line; end with Ctrl-D.", highlight=False)
        texts = [line for line in read_stdin_text(SENTENCE_INPUT_BYTES).split("\n") if line.strip()]
    if not texts:
        raise CharRNNError(f"No sentence to {what}: give SENTENCE arguments, --file FILE, or lines on stdin.")
    if skipped:
        err_console().print(f"skipped {skipped} blank line(s)", style="yellow")
    return texts
