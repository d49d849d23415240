"""The one exception type for mistakes a user can fix."""


class CharRNNError(Exception):
    """A user-facing error: the message says what went wrong and what to do.

    The CLI prints it as one line and exits with `exit_code` (1, a user error); the library
    raises it instead of printing or exiting.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(BaseException):
    """SIGTERM, raised where the command is (blocked on a read included), so that its clean-up runs; exit 143.

    A BaseException, as KeyboardInterrupt is (an `except Exception` does not swallow it), but not a
    KeyboardInterrupt: typer turns those into a silent exit 130.
    """
