"""Corpus arguments and streaming reads: files, folders and stdin, read in bounded chunks of whole lines.

A corpus is a list of text files read in sorted order, each one a sequence of lines (the tokens of
every line are followed by `<eos>`, so files join at `<eos>` boundaries). A folder stands for the
files under it that match a glob (recursively); `-` for standard input, spooled to a file first.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath
from typing import Any

from charrnn.core.errors import CharRNNError
from charrnn.core.text import check_encoding

CHUNK_BYTES = 4 << 20  # bytes read at a time: memory stays bounded whatever the file size
MAX_LINE_CHARS = 16 << 20  # a longer line is split (char level) or refused (word and subword levels)
DEFAULT_GLOB = "*.txt"


def check_glob(glob: str) -> None:
    """Refuse a --glob that is empty, absolute or climbs out of the corpus folder ('..')."""
    if not isinstance(glob, str) or not glob.strip() or "\0" in glob:
        raise CharRNNError(f"--glob must be a pattern of file names such as '*.txt', got {glob!r}.")
    if PurePath(glob).is_absolute() or glob.startswith(("/", "\\")) or ".." in PurePath(glob).parts:
        raise CharRNNError(
            f"--glob {glob!r} reaches outside the corpus folder; give a pattern inside it, such as '*.txt' "
            "or 'books/*.txt' (to read other files, name them or their folder as the corpus)."
        )


def check_corpus_path(given: str | Path) -> None:
    """Refuse an empty corpus path: it would name the current folder and every text file under it."""
    if str(given) == "":
        raise CharRNNError("An empty corpus path names no file; give a file, a folder or - for standard input.")


def expand_corpus(paths: list[str | Path], glob: str = DEFAULT_GLOB) -> list[Path]:
    """The files named by `paths` (a folder: its files matching `glob`, recursively), sorted within each folder."""
    check_glob(glob)
    files: list[Path] = []
    for given in paths:
        check_corpus_path(given)
        path = Path(given)
        if not path.exists():
            raise CharRNNError(f"{path}: no such file.")
        if path.is_dir():
            found = sorted(p for p in path.rglob(glob) if p.is_file() and ".charrnn-cache" not in p.parts)
            if not found:
                raise CharRNNError(f"{path} holds no files matching {glob!r}; pass --glob (e.g. --glob '*.md').")
            files.extend(found)
        elif not path.is_file():  # a FIFO would block, a device never end: a corpus is read several times
            raise CharRNNError(
                f"{path} is not a regular file (a FIFO, device or socket); give a text file, or - to read "
                "standard input."
            )
        else:
            files.append(path)
    if not files:
        raise CharRNNError("No corpus given; pass a text file, a folder or - for standard input.")
    return files


def read_chunks(
    path: Path,
    encoding: str = "utf-8",
    errors: str = "strict",
    chunk_bytes: int = CHUNK_BYTES,
    on_bytes: Callable[[int], None] | None = None,
    digest: Any = None,
    split_long_lines: bool = True,
    max_line: int | None = None,
) -> Iterator[str]:
    """The text of `path` in pieces of whole lines ('\\r\\n' read as '\\n'), about `chunk_bytes` at a time.

    Joined, the pieces equal the decoded file; each but the last ends with '\\n'. A byte that does not
    decode is reported with its file, offset and line. `on_bytes(n)` is called after each read, and
    `digest` (a hashlib object) is updated with the bytes read.

    A line longer than `max_line` characters is yielded in pieces that do not end with '\\n' when
    `split_long_lines` (the characters are the same, memory stays bounded); otherwise it is refused
    with its line number and length (a word or subword tokenizer needs whole lines).
    """
    if path.is_dir():
        raise CharRNNError(f"{path} is a directory; give the path of a text file.")
    check_encoding(encoding, errors)
    max_line = MAX_LINE_CHARS if max_line is None else max_line
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    offset, newlines, carry = 0, 0, ""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CharRNNError(f"{path}: cannot read ({exc.strerror}).") from None
    with handle:
        while True:
            try:
                raw = handle.read(chunk_bytes)
            except OSError as exc:
                raise CharRNNError(f"{path}: cannot read ({exc.strerror}).") from None
            if offset == 0 and b"\x00" in raw[:8192] and not encoding.lower().replace("-", "").startswith("utf16"):
                raise CharRNNError(f"{path} looks like a binary file (it contains NUL bytes), not text.")
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                pending = len(decoder.getstate()[0])
                at = max(offset - pending + exc.start, 0)
                line = newlines + raw.count(b"\n", 0, max(exc.start, 0)) + 1
                bad = exc.object[exc.start] if exc.start < len(exc.object) else 0
                raise CharRNNError(
                    f"{path} is not valid {encoding}: byte 0x{bad:02x} at offset {at} (line {line}); "
                    "pass --encoding (e.g. latin-1) or --errors replace."
                ) from None
            offset += len(raw)
            newlines += raw.count(b"\n")
            if digest is not None:
                digest.update(raw)
            if on_bytes is not None:
                on_bytes(len(raw))
            text = carry + text
            if not raw:
                if text:
                    yield text.replace("\r\n", "\n")
                return
            cut = text.rfind("\n") + 1  # a '\r\n' split across two reads stays together in `carry`
            carry = text[cut:]
            if cut:
                yield text[:cut].replace("\r\n", "\n")
            if len(carry) > max_line:
                if not split_long_lines:
                    raise CharRNNError(
                        f"{path}: line {newlines + 1} is longer than {max_line:,} characters; word and subword tokenizers need whole lines: "
                        "break the text into lines, or train with --level char."
                    )
                keep = 1 if carry.endswith("\r") else 0  # a '\r\n' across the split stays whole
                yield carry[: len(carry) - keep]
                carry = carry[len(carry) - keep :]


def has_text(files: list[Path]) -> bool:
    """Whether any of `files` holds a byte other than ASCII whitespace (stops at the first such byte)."""
    blank = b" \t\r\n\x0b\x0c"
    for path in files:
        with path.open("rb") as handle:
            while block := handle.read(1 << 16):
                if block.strip(blank):
                    return True
    return False


def total_bytes(files: list[Path]) -> int:
    """The summed size of `files` in bytes."""
    return sum(f.stat().st_size for f in files)


STDIN_MAX_BYTES = 8 << 30  # the most a corpus read from standard input may hold, unless --max-bytes says otherwise


def spool_stdin(folder: Path, max_bytes: int | None = None) -> Path:
    """Copy standard input into `folder`/stdin-<hash>.txt (named by its content) and return that path.

    At most `max_bytes` (default STDIN_MAX_BYTES) are copied: more is refused in one line, as is a full
    disk; the temporary copy is removed on every way out (an error, Ctrl-C, SIGTERM).
    """
    limit = STDIN_MAX_BYTES if max_bytes is None else max_bytes
    if type(limit) is not int or limit < 1:
        raise CharRNNError(f"--max-bytes must be a positive number of bytes, got {limit!r}.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CharRNNError(f"Cannot create {folder} to copy standard input into ({exc.strerror}).") from None
    digest = hashlib.sha256()
    temp = folder / f"stdin.{os.getpid()}.tmp"
    source = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else None
    total = 0
    try:
        with temp.open("wb") as out:
            while True:
                size = min(CHUNK_BYTES, limit + 1 - total)
                block = source.read(size) if source is not None else sys.stdin.read(size).encode("utf-8")
                if not block:
                    break
                total += len(block)
                if total > limit:
                    raise CharRNNError(
                        f"Standard input holds more than --max-bytes {limit:,} bytes; pass a larger --max-bytes, "
                        "or save the corpus to a file and name it."
                    )
                digest.update(block)
                out.write(block)
        target = folder / f"stdin-{digest.hexdigest()[:16]}.txt"
        os.replace(temp, target)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise CharRNNError(f"Could not copy standard input into {folder}: {exc.strerror or exc}.") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target
