"""The `charrnn` command line: typer apps over the Python API, one-line errors, exit codes."""

from __future__ import annotations

import contextlib
import io
import sys
from typing import Any

import typer

from charrnn.cli import export, inspect, lm, prepare, serve
from charrnn.cli.seq2seq import seq2seq_app
from charrnn.cli.streams import guarded_streams
from charrnn.core.errors import CharRNNError
from charrnn.core.version import __version__

# Exit codes: 0 success, 1 a user error (CharRNNError), 2 a usage error (the command line did not parse),
# 70 an internal error (a bug; EX_SOFTWARE in sysexits.h), 130 interrupted, 143 terminated.
EXIT_INTERNAL_ERROR = 70

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train recurrent language models on your text, sample from them, and score sentences.",
)


def _print_version(value: bool) -> None:
    if value:
        print(f"charrnn {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the charrnn version and exit."
    ),
) -> None:
    """charrnn: char-, word- and subword-level RNN language models."""


lm.register(app)
inspect.register(app)
export.register(app)
prepare.register(app)
app.add_typer(seq2seq_app, name="seq2seq")
serve.register(app)


@app.command()
def version() -> None:
    """Print the charrnn version."""
    print(__version__)


def tidy_help(command: Any) -> Any:
    """Plain help: no `<bool>` beside on/off flags, and arguments named RUN_DIR, [SENTENCES]... in usage lines."""
    for param in command.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.param_type_name == "argument" and param.metavar is None:
            param.metavar = name = (param.name or "").upper()
            usage = (name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else "")
            param._usage_display_name = lambda usage=usage: usage  # typer's own shows {run_dir}
    help_option = command.get_help_option

    def plain_help_option(ctx: Any) -> Any:
        option = help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = plain_help_option
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)
    return command


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    command = tidy_help(typer.main.get_command(app))
    if not args:  # bare `charrnn`: the help, and success
        args = ["--help"]
    try:
        with guarded_streams():
            if "train" in args:  # --nproc N: run this same command in N processes under torchrun
                from charrnn.core import distributed

                args, nproc = distributed.pop_nproc(args)
                if nproc is not None and nproc > 1:
                    with contextlib.redirect_stdout(io.StringIO()):  # check flags and data here: one line, not N
                        command.main(args=[*args, "--print-config"], prog_name="charrnn", standalone_mode=False)
                    sys.exit(distributed.launch(nproc, args))
            code = command.main(args=args, prog_name="charrnn", standalone_mode=False)
    except CharRNNError as exc:
        if debug:
            raise
        print(f"charrnn: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("charrnn: aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("charrnn: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
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
