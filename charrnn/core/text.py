"""Reading text: corpora and sentence files with one-line errors for every bad case, and standard input."""

from __future__ import annotations

import codecs
from pathlib import Path

from charrnn.core.errors import CharRNNError


def read_text(path: str | Path, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Read a text file, normalising line endings, with a one-line error for every bad case."""
    path = Path(path)
    if not path.exists():
        raise CharRNNError(f"{path}: no such file.")
    if path.is_dir():
        raise CharRNNError(f"{path} is a directory; give the path of a text file.")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise CharRNNError(f"Unknown --encoding {encoding!r} (try utf-8, latin-1, cp1252).") from None
    if errors not in ("strict", "replace", "ignore"):
        raise CharRNNError(f"--errors must be strict, replace or ignore, got {errors!r}.")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CharRNNError(f"{path}: cannot read ({exc.strerror}).") from None
    if b"\x00" in raw[:8192] and not encoding.lower().replace("-", "").startswith("utf16"):
        raise CharRNNError(f"{path} looks like a binary file (it contains NUL bytes), not text.")
    try:
        text = raw.decode(encoding, errors=errors)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise CharRNNError(
            f"{path} is not valid {encoding}: byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line}); "
            "pass --encoding (e.g. latin-1) or --errors replace."
        ) from None
    return text.replace("\r\n", "\n")


def read_stdin_text() -> str:
    """Standard input as UTF-8 text, with a one-line error for undecodable bytes."""
    import sys

    if not hasattr(sys.stdin, "buffer"):  # already text (a replaced stdin, e.g. in tests)
        return sys.stdin.read().replace("\r\n", "\n")
    raw = sys.stdin.buffer.read()
    try:
        return raw.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise CharRNNError(
            f"standard input is not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}; "
            "convert it to UTF-8 first (e.g. with iconv)."
        ) from None


def read_corpus(path: str | Path, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Read a training corpus; it must hold some non-blank text."""
    text = read_text(path, encoding, errors)
    if not text.strip():
        raise CharRNNError(f"{path} is empty; a corpus needs some text to learn from.")
    return text


PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent


def bundled(path: Path) -> Path | None:
    """A bundled corpus file (e.g. corpora/tinyshakespeare.txt), from the working directory or the source checkout."""
    for candidate in (path, PACKAGE_ROOT / path):
        if candidate.is_file():
            return candidate
    return None
