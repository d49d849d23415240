"""Opening files without surprises: only regular files are read, never a FIFO or device that would block
or never end, nothing larger than a stated bound, and nothing is written through a symbolic link; and
making a rename durable (`fsync_directory`)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from charrnn.core.errors import CharRNNError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def open_regular(path: Path, follow: bool = True) -> int:
    """Open `path` for reading, refusing anything but a regular file (a FIFO is never waited on)."""
    flags = os.O_RDONLY | NONBLOCK | (0 if follow else NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise CharRNNError(f"{path}: cannot read ({exc.strerror}).") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise CharRNNError(f"{path} is {_kind(mode)}; charrnn reads only regular files: give a plain file.")
    os.set_blocking(fd, True)
    return fd


def read_regular(path: Path, limit: int, what: str = "file") -> bytes:
    """The bytes of regular file `path`, refused with one line when it holds more than `limit` bytes."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise CharRNNError(
                f"{path} is {size:,} bytes, more than the {limit:,} a {what} may hold; "
                "it is damaged or not the file you meant."
            )
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise CharRNNError(f"{path}: cannot read ({exc.strerror}).") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while being read
        raise CharRNNError(f"{path} holds more than the {limit:,} bytes a {what} may hold.")
    return data


def check_plain(path: Path) -> None:
    """Refuse a run file that is a symbolic link or not a regular file (charrnn will write to it)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CharRNNError(f"{path}: cannot check ({exc.strerror}).") from None
    if stat.S_ISLNK(mode):
        raise CharRNNError(
            f"{path} is a symbolic link; charrnn never writes through links: replace it with the file itself "
            "(or delete it) and run again."
        )
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise CharRNNError(f"{path} is {_kind(mode)}; a run directory holds only plain files: remove it.")


def open_append(path: Path) -> int:
    """Open `path` for appending (creating it), never through a symbolic link and never blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW | NONBLOCK, 0o644)
    except OSError as exc:
        check_plain(path)  # a link (ELOOP) or FIFO without a reader (ENXIO): say which
        raise CharRNNError(f"Could not write {path}: {exc.strerror}.") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        check_plain(path)
        raise CharRNNError(f"{path} is not a regular file; a run directory holds only plain files: remove it.")
    os.set_blocking(fd, True)
    return fd


def fsync_directory(directory: Path) -> None:
    """Flush `directory`'s entries to disk, so that a file created or renamed in it survives a crash (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
