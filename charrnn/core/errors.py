"""The one exception type for mistakes a user can fix, and naming its settings in each front end's words."""

from __future__ import annotations

import re
from collections.abc import Callable

FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")


class CharRNNError(Exception):
    """A user-facing error: the message says what went wrong and what to do.

    The CLI prints it as one line and exits with `exit_code` (1, a user error); the library
    raises it instead of printing or exiting. Messages name settings by their command-line flags
    (`--max-time`); a front end that has other words for them (the Python API's keywords, the web
    page's JSON keys, the interactive sampler's commands) re-raises `in_words_of(...)`, which names
    them its way and keeps the command-line form in `cli_message`.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.cli_message = message  # the message as the command line says it

    def in_words_of(self, name: Callable[[str], str]) -> CharRNNError:
        """This error with each `--flag-name` in its message replaced by `name("flag-name")`."""
        renamed = CharRNNError(FLAG.sub(lambda m: name(m.group(1)), self.cli_message), self.exit_code)
        renamed.cli_message = self.cli_message
        return renamed
