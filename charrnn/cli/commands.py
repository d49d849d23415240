"""The typer app: the root options (--debug, --version) and every command, registered from the command modules."""

from __future__ import annotations

from typing import Any

import typer

from charrnn.cli import export, inspect, labelled, lessons, lm, prepare, serve
from charrnn.cli.cache import cache_app
from charrnn.cli.options import narrow_help
from charrnn.cli.seq2seq import seq2seq_app
from charrnn.core.version import __version__

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
labelled.register(app)
inspect.register(app)
export.register(app)
prepare.register(app)
app.add_typer(seq2seq_app, name="seq2seq")
app.add_typer(cache_app, name="cache")
serve.register(app)
lessons.register(app)


@app.command()
def version() -> None:
    """Print the charrnn version."""
    print(__version__)


def tidy_help(command: Any, width: int | None = None) -> Any:
    """Plain help: no `<bool>` beside on/off flags, arguments named RUN_DIR, [SENTENCES]... in usage lines, and
    the training options' short help texts under 120 columns (`width`: the terminal's, by default)."""
    if width is None:
        from rich.console import Console

        width = Console().width
    for param in command.params:
        narrow_help(param, width)
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
        tidy_help(sub, width)
    return command


def click_command() -> Any:
    """The app as the click command `main` runs, with the plain help."""
    return tidy_help(typer.main.get_command(app))
