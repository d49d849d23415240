"""The `charrnn` command line: typer apps over the Python API, one-line errors, exit codes.

The app and its commands live in `charrnn.cli.commands`, imported on first use: `charrnn --version`
answers without loading typer, the commands or torch.
"""

from __future__ import annotations

import contextlib
import io
import sys
from typing import Any

from charrnn.cli.streams import guarded_streams
from charrnn.core.errors import CharRNNError
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
    try:
        with guarded_streams():
            code = run(args)
    except CharRNNError as exc:
        if debug:
            raise
        print(f"charrnn: error: {exc.cli_message}", file=sys.stderr)  # in flags, also when the API renamed them
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("charrnn: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        import typer  # loaded already when the exception is typer's own

        if isinstance(exc, typer.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, typer.Abort):
            print("charrnn: aborted", file=sys.stderr)
            sys.exit(130)
        if debug:
            raise
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # a usage error from typer/click
            message = " ".join(exc.format_message().split())
            print(f"charrnn: error: {message} (see --help)", file=sys.stderr)
            sys.exit(exc.exit_code)
        # anything else is a bug in charrnn: still one line unless --debug
        print(
            f"charrnn: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERNAL_ERROR)
    sys.exit(code if isinstance(code, int) else 0)
