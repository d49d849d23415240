"""Standard streams that fail in one line: a closed or full stdout is "cannot write output: ...",
a closed stdin reads as empty input, a closed stderr is quietly discarded; text that the terminal must
not obey (control characters, lone surrogates) is shown as escapes."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

from charrnn.core.errors import CharRNNError

# C0 controls but line feed and tab, DEL, C1 controls, and lone surrogates: shown as escapes, never sent raw
_CONTROL = re.compile("[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\ud800-\\udfff]")
_CONTROL_OR_LINE = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, one_line: bool = False) -> str:
    """`text` with control characters and lone surrogates written as escapes (`\\x1b`, `\\ud800`).

    A file name holding ESC, BEL or an OSC sequence is shown, never obeyed by the terminal;
    `one_line` escapes line breaks and tabs too (error messages are one line).
    """
    return (_CONTROL_OR_LINE if one_line else _CONTROL).sub(_escape, text)


INTERRUPTED = [False]  # set when Ctrl-C ended the command (typer turns KeyboardInterrupt into a silent 130)


def interrupt(signum: int, frame: Any) -> None:
    """SIGINT: remember it, then raise KeyboardInterrupt as Python's own handler does."""
    INTERRUPTED[0] = True
    raise KeyboardInterrupt()


class GuardedOutput:
    """Standard output whose write errors become a `CharRNNError` ("cannot write output: ...")."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _fail(self, reason: str) -> CharRNNError:
        self._silence()
        return CharRNNError(f"cannot write output: {reason}; check where standard output goes (a full disk?).")

    def _silence(self) -> None:
        """Point the real stdout at /dev/null so Python's own flush at exit does not fail again."""
        with contextlib.suppress(Exception):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)

    def write(self, text: str) -> int:
        if self._stream is None:
            raise CharRNNError(
                "cannot write output: standard output is closed; run with stdout open or redirected."
            )
        try:
            return self._stream.write(text)
        except UnicodeEncodeError:  # a lone surrogate (or a character the stream's encoding lacks): escaped
            encoding = getattr(self._stream, "encoding", None) or "utf-8"
            return self.write(text.encode(encoding, "backslashreplace").decode(encoding))
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:
            raise self._fail(getattr(exc, "strerror", None) or str(exc)) from None

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:
            raise self._fail(getattr(exc, "strerror", None) or str(exc)) from None

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name: str) -> Any:
        if self._stream is None:
            raise CharRNNError(
                "cannot write output: standard output is closed; run with stdout open or redirected."
            )
        return getattr(self._stream, name)


class QuietErrors:
    """Standard error whose write failures are ignored: progress and notes must never cost a run.

    `2>/dev/full` (ENOSPC) or `2>&1 | head -1` (a broken pipe) used to end training at its first progress
    line with nothing saved; now the first failure silences stderr and the command carries on.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.failed = False

    def write(self, text: str) -> int:
        if not self.failed:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):
                self.failed = True
        return len(text)

    def flush(self) -> None:
        if not self.failed:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self.failed = True

    def isatty(self) -> bool:
        try:
            return not self.failed and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_streams() -> Iterator[None]:
    """For the block: stdout guarded, a closed stdin replaced by empty input, a closed stderr by a sink,
    and failing writes to stderr ignored."""
    saved = sys.stdin, sys.stdout, sys.stderr
    if sys.stdin is None:
        sys.stdin = io.StringIO("")
    sys.stderr = QuietErrors(sys.stderr if sys.stderr is not None else io.StringIO())  # type: ignore[assignment]
    guard = GuardedOutput(sys.stdout)
    sys.stdout = guard  # type: ignore[assignment]
    try:
        yield
        guard.flush()  # a full disk shows here, inside the error handling, not at interpreter exit
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
