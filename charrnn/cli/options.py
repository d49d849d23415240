"""CLI flags built from the option declarations on the config dataclasses (`charrnn.core.options`).

A training command gets one flag per user option, with the dataclass's default and help text, and
learns which flags were typed on the command line (click's parameter source), so that only those
override a config file or, on resume, the run's saved settings.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import typer

from charrnn.core.options import OptionSpec

# The panels of a training command's --help, in this order; an option goes to the first whose test it passes.
PANELS = ("Data", "Model", "Training", "Schedule and stopping", "Output", "Performance")
PANEL_OF = {
    **dict.fromkeys(("val_fraction", "val_split", "max_length", "bptt"), "Data"),
    **dict.fromkeys(
        ("schedule", "warmup_steps", "min_lr", "min_lr_fraction", "epochs", "max_steps", "max_time"),
        "Schedule and stopping",
    ),  # fmt: skip
    **dict.fromkeys(("plateau_factor", "plateau_patience"), "Schedule and stopping"),
    **dict.fromkeys(
        ("eval_every", "eval_tokens", "save_every", "save_every_minutes", "keep_checkpoints", "log_every"),
        "Output",
    ),  # fmt: skip
    **dict.fromkeys(("device", "threads", "precision", "compile", "nproc"), "Performance"),
}


def panel(spec: OptionSpec) -> str:
    """The --help panel of a config option: by name, else by the table it sets (tokenizer and data files: Data)."""
    if spec.name in PANEL_OF:
        return PANEL_OF[spec.name]
    table = spec.paths[0].split(".")[0] if "." in spec.paths[0] else ""
    if table == "model":
        return "Model"
    return "Training" if table == "training" else "Data"


SHORTENED: dict[str, str] = {}  # full help -> short help, of the options built here


def short_help(text: str) -> str:
    """A help text without its parenthesised remarks ("Stop after N minutes (this session)." -> "Stop after N
    minutes."): what an 80-column --help shows; wide terminals get the full text (`narrow_help`)."""
    return re.sub(r"\s+\([^()]*\)", "", text)


def narrow_help(param: Any, width: int) -> None:
    """Show `param`'s short help under 120 columns, if it has one."""
    if width < 120 and param.help in SHORTENED:
        param.help = SHORTENED[param.help]


def flag_names(spec: OptionSpec) -> list[str]:
    """The click declarations of an option: `--name`, or `--name/--no-name` for a switch without its own flag."""
    if spec.flag is not None:
        return [spec.flag]
    flag = "--" + spec.name.replace("_", "-")
    if spec.annotation is bool:
        return [f"{flag}/--no-{spec.name.replace('_', '-')}"]
    return [flag]


def option_parameter(spec: OptionSpec) -> inspect.Parameter:
    """A keyword parameter whose default is the typer option for `spec`."""
    SHORTENED[spec.help] = short_help(spec.help)
    default = typer.Option(
        spec.default,
        *flag_names(spec),
        help=spec.help,
        show_default=spec.default is not None,
        rich_help_panel=panel(spec),
    )
    return inspect.Parameter(
        spec.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=spec.annotation
    )


def add_config_command(
    app: typer.Typer,
    name: str,
    specs: dict[str, OptionSpec],
    fixed: list[inspect.Parameter],
    body: Callable[[dict[str, Any], dict[str, Any]], None],
    help_text: str,
) -> None:
    """Register command `name`: the `fixed` parameters, then a flag per CLI option in `specs`.

    `body(arguments, given)` receives the fixed parameters' values and the options typed on the
    command line (by flat name); options left at their defaults are not in `given`.
    """
    cli_specs = {n: s for n, s in specs.items() if s.cli}

    def command(ctx: typer.Context, **values: Any) -> None:
        given = {n: values[n] for n in cli_specs if _typed_by_user(ctx, n)}
        body({n: v for n, v in values.items() if n not in cli_specs}, given)

    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    keyword_fixed = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixed]
    options = sorted([*keyword_fixed, *(option_parameter(s) for s in cli_specs.values())], key=_panel_index)
    parameters = [context, *options]
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = help_text
    command.__name__ = name.replace("-", "_")
    app.command(name)(command)


def _panel_index(parameter: inspect.Parameter) -> int:
    """Where a parameter's panel comes in --help (arguments and options without a panel first)."""
    name = getattr(parameter.default, "rich_help_panel", None)
    return PANELS.index(name) if name in PANELS else -1


def _typed_by_user(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` came from the command line (by name: typer may vendor its own click)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def corpus_argument(text: str) -> Any:
    """A corpus argument as a path; an empty one is refused (as a path it would be '.', every file under it)."""
    from pathlib import Path

    from charrnn.core.corpus import check_corpus_path

    check_corpus_path(text)
    return Path(text)


def parameter(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """A fixed (non-config) parameter of a command: `default` is a typer.Argument or typer.Option."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def run_parameters(default_out: str, config_tables: str) -> list[inspect.Parameter]:
    """The run-directory and config-file parameters both training commands take."""
    from pathlib import Path

    def path_option(name: str, *flags: str, help_text: str) -> inspect.Parameter:
        return parameter(name, Path | None, typer.Option(None, *flags, help=help_text, rich_help_panel="Output"))

    def switch(name: str, flag: str, help_text: str) -> inspect.Parameter:
        return parameter(name, bool, typer.Option(False, flag, help=help_text, rich_help_panel="Output"))

    return [
        path_option("out", "--out", "-o", help_text=f"Run directory (default {default_out})."),
        path_option("resume", "--resume", help_text="Continue the run in this directory."),
        switch("overwrite", "--overwrite", "Replace an existing run in --out."),
        path_option(
            "config", "--config", help_text=f"TOML file of settings (tables {config_tables}); flags override it."
        ),
        switch("print_config", "--print-config", "Print the full effective config as TOML and exit."),
        switch("quiet", "--quiet", "No progress or summary on stderr; notes, warnings and errors only."),
        switch("as_json", "--json", "Print the training results (steps, losses, speed, time) as JSON on stdout."),
        parameter(
            "nproc",
            int | None,
            typer.Option(
                None,
                "--nproc",
                help="Train in N processes on this machine (torchrun; global batch N x --batch-size).",
                rich_help_panel="Performance",
            ),
        ),
    ]


RESUME_RULE = (
    "With --resume the run's saved settings are the base: flags that may change mid-run (stopping rules, "
    "learning rate and schedule, evaluation/save cadence, device, threads, precision) override them and are "
    "saved; flags that cannot (tokenizer, model shape, data, seed) must match the run or are refused."
)


TASK_HELP = (
    "generate: a language model; classify: a classifier of labelled DATA (N vs 1). Each kind has its own "
    "defaults (see --print-config); the defaults shown here are the language model's."
)
CONDITION_HELP = "label: a language model conditioned on the label of labelled DATA (1 vs N); none: plain."


def add_train_command(
    app: typer.Typer,
    kind: str,
    data: inspect.Parameter,
    *,
    summary: str,
    default_out: str,
    tables: str,
    command: str = "train",
    epilogue: Any = None,
) -> None:
    """Register `command` (`train`) for a kind of model: DATA, the run parameters, one flag per option of the kind's config (`charrnn.kinds`).

    Where one command trains several kinds (`charrnn train`: a language model, a classifier, a conditional
    language model), it takes every option of each (the first kind's default shown) and `--task` and
    `--condition` choose the kind; each kind keeps its own defaults for the options not typed.
    `epilogue(result)`, when given, returns lines printed after the summary and figures added to --json
    (see `charrnn.cli.display.train_from_cli`).
    """
    from charrnn import kinds
    from charrnn.cli.display import train_from_cli

    spec = kinds.model_kind(kind)
    trained = kinds.trained_by(spec.train_command)
    specs: dict[str, OptionSpec] = {}
    for other in trained:
        for name, option in other.options().items():
            specs.setdefault(name, option)
    choosers = []
    if len(trained) > 1:
        choosers = [
            parameter("task", str | None, typer.Option(None, "--task", help=TASK_HELP, show_default=False)),
            parameter("condition", str | None, typer.Option(None, "--condition", help=CONDITION_HELP)),
        ]

    def body(arguments: dict[str, Any], given: dict[str, Any]) -> None:
        task, condition = (arguments.get("task"), arguments.get("condition")) if choosers else (None, None)
        chosen = None if arguments["resume"] and task is None and condition is None else kind
        if task is not None or condition is not None:
            chosen = kinds.training_kind(task, condition).name
        train_from_cli(arguments[data.name], arguments, given, kind=chosen, epilogue=epilogue)

    fixed = [data, *choosers, *run_parameters(default_out, tables)]
    add_config_command(app, command, specs, fixed, body, summary + "\n\n" + RESUME_RULE)
