"""The user cache folder: what charrnn can rebuild, kept out of the user's data folders.

As pip, Hugging Face datasets and torch hub do, charrnn writes its caches to one folder per user:
$CHARRNN_CACHE, else $XDG_CACHE_HOME/charrnn, else ~/.cache/charrnn. It holds

    tokens/      token caches (`charrnn.core.token_cache`): vocab-<key>/, tokens-<key>/ and examples-<key>/ folders
    stdin/       standard input given as a corpus (`-`), kept so that the run can be resumed
    precision/   the decisions of `--precision auto`'s speed probe (`charrnn.core.precision`)

Everything in it may be deleted at any time (`charrnn cache clear`): it is rebuilt when needed,
except that a run trained on standard input can no longer be resumed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

PARTS = {
    "tokens": "token caches",
    "stdin": "standard input kept for resuming",
    "precision": "--precision auto decisions",
}


def cache_home() -> Path:
    """The user cache folder: $CHARRNN_CACHE, else $XDG_CACHE_HOME/charrnn, else ~/.cache/charrnn."""
    if os.environ.get("CHARRNN_CACHE"):
        return Path(os.environ["CHARRNN_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "charrnn"
    return Path.home() / ".cache" / "charrnn"


def cache_folder(part: str) -> Path:
    """One part of the user cache folder (one of `PARTS`); not created here."""
    return cache_home() / part


@dataclass(frozen=True)
class CacheEntry:
    """One thing in the user cache folder: a token cache, a copy of stdin, a precision decision."""

    path: Path
    part: str  # the key of `PARTS` it belongs to
    size: int  # bytes on disk
    modified: float  # st_mtime of its newest file

    @property
    def name(self) -> str:
        return self.path.name


def _size_and_time(path: Path) -> tuple[int, float]:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    stats = [p.stat() for p in files]
    return sum(s.st_size for s in stats), max((s.st_mtime for s in stats), default=path.stat().st_mtime)


def entries() -> list[CacheEntry]:
    """Everything in the user cache folder, part by part, oldest first within a part."""
    found = []
    for part in PARTS:
        folder = cache_folder(part)
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            size, modified = _size_and_time(path)
            found.append(CacheEntry(path, part, size, modified))
    return sorted(found, key=lambda e: (list(PARTS).index(e.part), e.modified))


def clear() -> tuple[int, int]:
    """Delete everything in the user cache folder's parts; returns (entries, bytes) freed."""
    freed = entries()
    for entry in freed:
        if entry.path.is_dir():
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            entry.path.unlink(missing_ok=True)
    return len(freed), sum(e.size for e in freed)
