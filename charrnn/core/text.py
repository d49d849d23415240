"""Reading text: corpora and sentence files with one-line errors for every bad case, and standard input."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from charrnn.core.errors import CharRNNError


def check_encoding(encoding: str, errors: str) -> None:
    """Refuse an unknown --encoding or --errors value."""
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError, ValueError):
        raise CharRNNError(f"Unknown --encoding {encoding!r} (try utf-8, latin-1, cp1252).") from None
    if not getattr(info, "_is_text_encoding", True):  # rot13, base64, uu_codec, zlib: bytes-to-bytes transforms
        raise CharRNNError(
            f"--encoding {encoding!r} is a transform, not a text encoding; give one such as utf-8, latin-1, cp1252."
        )
    if errors not in ("strict", "replace", "ignore"):
        raise CharRNNError(f"--errors must be strict, replace or ignore, got {errors!r}.")


def read_text(path: str | Path, encoding: str = "utf-8", errors: str = "strict", limit: int | None = None) -> str:
    """Read a text file, normalising line endings, with a one-line error for every bad case.

    At most `limit` bytes (default: a quarter of the free memory, `text_limit`)."""
    path = Path(path)
    if not path.exists():
        raise CharRNNError(f"{path}: no such file.")
    if path.is_dir():
        raise CharRNNError(f"{path} is a directory; give the path of a text file.")
    check_encoding(encoding, errors)
    binary_ok = encoding.lower().replace("-", "").startswith("utf16")
    if limit is None:
        raw = read_bounded(path, text_limit(), binary_ok)
    else:
        raw = read_bounded(path, limit, binary_ok, "the most read here")
    try:
        text = raw.decode(encoding, errors=errors)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise CharRNNError(
            f"{path} is not valid {encoding}: byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line}); "
            "pass --encoding (e.g. latin-1) or --errors replace."
        ) from None
    return text.replace("\r\n", "\n")


def text_limit() -> int:
    """The most bytes of text read from one file: a quarter of the available memory (decoding takes up to 4x)."""
    from charrnn.core.memory import available_bytes

    free = available_bytes()
    return max(free // 4, 1 << 26) if free is not None else 1 << 34


def read_bounded(
    path: Path,
    limit: int,
    binary_ok: bool = False,
    reason: str = "the most this machine's free memory allows to read",
) -> bytes:
    """The bytes of `path` read in chunks, refused past `limit` bytes or when the start holds NUL bytes.

    Pipes and devices the user names on purpose (e.g. /dev/stdin) are read too, but never without end:
    /dev/zero stops at its first chunk (NUL bytes), an endless stream at `limit`.
    """
    chunks, total = [], 0
    try:
        with open(path, "rb") as handle:
            if os.path.isfile(path) and os.fstat(handle.fileno()).st_size > limit:
                raise CharRNNError(
                    f"{path} is {os.fstat(handle.fileno()).st_size:,} bytes, more than {limit:,} ({reason}); "
                    "split it into smaller files."
                )
            while chunk := handle.read(1 << 20):
                if not chunks and not binary_ok and b"\x00" in chunk[:8192]:
                    raise CharRNNError(f"{path} looks like a binary file (it contains NUL bytes), not text.")
                total += len(chunk)
                if total > limit:
                    raise CharRNNError(
                        f"{path} holds more than {limit:,} bytes ({reason}) or never ends; give a regular text "
                        "file, or split it."
                    )
                chunks.append(chunk)
    except OSError as exc:
        raise CharRNNError(f"{path}: cannot read ({exc.strerror}).") from None
    return b"".join(chunks)


def read_stdin_text(limit: int | None = None) -> str:
    """Standard input as UTF-8 text, with a one-line error for undecodable bytes; more than `limit` bytes
    (default: a quarter of the free memory) is refused (`yes | charrnn ...` never ends)."""
    import sys

    limit = text_limit() if limit is None else limit
    too_much = CharRNNError(
        f"standard input holds more than {limit:,} bytes; give a file, or split the input into smaller parts."
    )
    if not hasattr(sys.stdin, "buffer"):  # already text (a replaced stdin, e.g. in tests)
        text = sys.stdin.read(limit + 1)
        if len(text) > limit:
            raise too_much
        return text.replace("\r\n", "\n")
    chunks, total = [], 0
    while block := sys.stdin.buffer.read(min(1 << 20, limit + 1 - total)):
        chunks.append(block)
        total += len(block)
        if total > limit:
            raise too_much
    raw = b"".join(chunks)
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


PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent  # the source checkout, when charrnn runs from one
PACKAGE_CORPORA = Path(__file__).resolve().parent.parent / "corpora"  # where a wheel installs corpora/


def bundled(path: Path) -> Path | None:
    """A bundled corpus file (e.g. corpora/tinyshakespeare.txt): from the working directory, the source
    checkout, or the installed package (a wheel ships corpora/ as the package data charrnn/corpora/)."""
    candidates = [path, PACKAGE_ROOT / path]
    if path.parts[:1] == ("corpora",):
        candidates.append(PACKAGE_CORPORA.joinpath(*path.parts[1:]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None
