"""The `charrnn` command line: typer apps over the Python API, one-line errors, exit codes.

The app and its commands live in `charrnn.cli.commands`, imported on first use: `charrnn --version`
answers without loading typer, the commands or torch.
"""

from __future__ import annotations

import contextlib
import io
import sys
from typing import Any

from charrnn.cli.streams import INTERRUPTED, guarded_streams, interrupt, visible
from charrnn.core.errors import CharRNNError, Terminated
from charrnn.core.version import __version__

# Exit codes: 0 success, 1 a user error (CharRNNError), 2 a usage error (the command line did not parse),
# 70 an internal error (a bug; EX_SOFTWARE in sysexits.h), 130 interrupted, 143 terminated.
EXIT_INTERNAL_ERROR = 70


def __getattr__(name: str) -> Any:
    """`app`, the typer app, from `charrnn.cli.commands` (PEP 562: built only when asked for)."""
    if name == "app":
        from charrnn.cli.commands import app

        return app
    raise AttributeError(f"module 'charrnn.cli' has no attribute {name!r}")


def run(args: list[str]) -> Any:
    """Run one command line; returns the command's exit code (None for success)."""
    if args == ["--version"]:  # the one answer that needs no commands: fast
        print(f"charrnn {__version__}")
        return 0
    from charrnn.cli.commands import click_command

    command = click_command()
    if not args:  # bare `charrnn`: the help, and success
        args = ["--help"]
    if "train" in args:  # --nproc N: run this same command in N processes under torchrun
        from charrnn.core import distributed

        args, nproc = distributed.pop_nproc(args)
        if nproc is not None and nproc > 1:
            with contextlib.redirect_stdout(io.StringIO()):  # check flags and data here: one line, not N
                command.main(args=[*args, "--print-config"], prog_name="charrnn", standalone_mode=False)
            sys.exit(distributed.launch(nproc, args))
    return command.main(args=args, prog_name="charrnn", standalone_mode=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    previous = _install_signal_handlers()
    INTERRUPTED[0] = False
    try:
        with guarded_streams():
            code = run(args)
        if code == 130 and INTERRUPTED[0]:  # typer's silent exit for KeyboardInterrupt: say it
            _say("charrnn: interrupted")
    except CharRNNError as exc:
        if debug:
            raise
        _say(
            f"charrnn: error: {visible(exc.cli_message, one_line=True)}"
        )  # in flags, also when the API renamed them
        sys.exit(exc.exit_code)
    except Terminated:
        _say("charrnn: terminated")
        sys.exit(143)
    except KeyboardInterrupt:
        _say("charrnn: interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        import typer  # loaded already when the exception is typer's own

        if isinstance(exc, typer.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, typer.Abort):
            _say("charrnn: aborted")
            sys.exit(130)
        if debug:
            raise
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # a usage error from typer/click
            message = " ".join(exc.format_message().split())
            _say(f"charrnn: error: {visible(message, one_line=True)} (see --help)")
            sys.exit(exc.exit_code)
        # anything else is a bug in charrnn: still one line unless --debug
        _say(
            f"charrnn: internal error: {type(exc).__name__}: {visible(str(exc), one_line=True)} "
            "(rerun with --debug for the traceback)"
        )
        sys.exit(EXIT_INTERNAL_ERROR)
    finally:
        _restore_signal_handlers(previous)
    sys.exit(code if isinstance(code, int) else 0)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def _install_signal_handlers() -> dict[int, Any]:
    """For the command's duration: SIGTERM raises `Terminated` (its clean-up runs: temporary files are
    removed, a blocked read ends), SIGINT is remembered as it raises KeyboardInterrupt; returns the
    previous handlers (none off the main thread: a test calling main keeps its own)."""
    import signal

    previous = {}
    for signum, handler in ((signal.SIGTERM, _raise_terminated), (signal.SIGINT, interrupt)):
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread
            break
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    import signal

    for signum, handler in previous.items():
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signum, handler)


def _say(line: str) -> None:
    """A last line on stderr, never failing (stderr may be closed or full)."""
    with contextlib.suppress(Exception):
        print(line, file=sys.stderr)
