"""The one exception type for mistakes a user can fix, and naming its settings in each front end's words."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import Any, TypeVar

FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?: ([A-Z][A-Z_]*)\b)?")  # --src FILE, --seed
Namer = Callable[[str, "str | None"], str]  # (flag without its dashes, the placeholder after it) -> the words
F = TypeVar("F", bound=Callable[..., Any])


class CharRNNError(Exception):
    """A user-facing error: the message says what went wrong and what to do.

    The CLI prints it as one line and exits with `exit_code` (1, a user error); the library
    raises it instead of printing or exiting. Messages name settings by their command-line flags
    (`--max-time`); a front end that has other words for them (the Python API's keywords, the web
    page's JSON keys, the interactive sampler's commands) re-raises `in_words_of(...)`, which names
    them its way and keeps the command-line form in `cli_message`.
    """

    def __init__(self, message: str, exit_code: int = 1, *, forms: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.cli_message = message  # the message as the command line says it
        self.forms = forms or {}  # the message as a front end says it, where renaming flags reads badly

    def in_words_of(self, name: Namer, form: str | None = None) -> CharRNNError:
        """This error as a front end says it: its own `forms[form]`, or each `--flag-name [PLACEHOLDER]` of the
        message replaced by `name("flag-name", "PLACEHOLDER" or None)`."""
        text = self.forms.get(form) if form else None
        if text is None:
            text = FLAG.sub(lambda m: name(m.group(1), m.group(2)), self.cli_message)
        renamed = CharRNNError(text, self.exit_code, forms=self.forms)
        renamed.cli_message = self.cli_message
        return renamed


def speaking(name: Namer, form: str | None = None) -> Callable[[F], F]:
    """A decorator: CharRNNErrors leave the function in the words of a front end (`CharRNNError.in_words_of`)."""

    def decorate(function: F) -> F:
        if inspect.isgeneratorfunction(function):

            @functools.wraps(function)
            def generator(*args: Any, **kwargs: Any) -> Any:
                try:
                    yield from function(*args, **kwargs)
                except CharRNNError as exc:
                    raise exc.in_words_of(name, form).with_traceback(exc.__traceback__) from None

            return generator  # type: ignore[return-value]

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except CharRNNError as exc:
                raise exc.in_words_of(name, form).with_traceback(exc.__traceback__) from None

        return wrapper  # type: ignore[return-value]

    return decorate


_API_NAMER: list[Namer] = []  # set by `charrnn.kinds`, which knows each kind's keywords (a layer above this one)


def name_api_keywords(namer: Namer) -> None:
    """Make `namer` (flag, placeholder) -> the Python API's words the one `api_errors` uses."""
    _API_NAMER[:] = [namer]


def api_keyword(flag: str, placeholder: str | None = None) -> str:
    """How the Python API names the setting of `--flag` in an error (see `charrnn.kinds.keyword`)."""
    if _API_NAMER:
        return _API_NAMER[0](flag, placeholder)
    name = flag.replace("-", "_")
    return f"{name}={placeholder}" if placeholder else name


api_errors = speaking(api_keyword, "api")  # decorates the API's functions: their errors name keywords, not flags


class Terminated(BaseException):
    """SIGTERM, raised where the command is (blocked on a read included), so that its clean-up runs; exit 143.

    A BaseException, as KeyboardInterrupt is (an `except Exception` does not swallow it), but not a
    KeyboardInterrupt: typer turns those into a silent exit 130.
    """
