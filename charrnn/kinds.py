"""The registry of model kinds: the one table the API, the CLI, `charrnn info`, the web page and the
engine look a kind of model up in.

A kind is one subpackage (its config dataclass, model, training recipe with its `Task`, and its
loaded-run class) plus one `ModelKind` entry in `KINDS` below; nothing else in charrnn switches on
the kind (docs/architecture.md, "Adding a model kind"). Only the config classes are imported here:
they are plain dataclasses, so the CLI can declare every option without importing torch. The recipe
and the loaded-run class are imported when a run of that kind is trained or loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charrnn.core.errors import CharRNNError, speaking
from charrnn.core.options import OptionSpec, option_specs
from charrnn.lm.config import RunConfig
from charrnn.seq2seq.config import SIDE_OPTIONS, Seq2SeqRunConfig

PathLike = str | Path


def _one_file(field: str, what: str) -> Callable[[list[str]], dict[str, Any]]:
    """The DATA reader of a kind that trains on one file (`what`), set into `field`."""

    def read(items: list[str]) -> dict[str, Any]:
        if len(items) > 1:
            raise CharRNNError(f"{what}; join them first.")
        return {field: items[0]}

    return read


def _corpus_files(items: list[str]) -> dict[str, Any]:
    """A language model's DATA: the first file or folder is the corpus, the rest `more_corpora`."""
    return {"corpus": items[0], "more_corpora": [str(Path(item).resolve()) for item in items[1:]]}


@dataclass(frozen=True)
class ModelKind:
    """Everything charrnn needs to know about one kind of model."""

    name: str  # saved as config.json's "kind"
    title: str  # what `charrnn info`, `charrnn runs` and the web page call it
    run_title: str  # as in "RUN holds a language-model run"
    article: str  # as in "not a language model"
    commands: str  # the commands for such runs, for an error that sends the user there
    train_command: str  # the CLI command that trains one, after "charrnn"
    summary_title: str  # the title of the table printed after training
    config_class: type  # the run's config dataclass, saved as config.json
    recipe_path: str  # "module:Class" of the training recipe (`charrnn.core.engine.Recipe`)
    run_path: str  # "module:Class" of the loaded run (`charrnn.core.loaded_run.LoadedRun`)
    read_data: Callable[[list[str]], dict[str, Any]]  # the positional DATA argument(s) -> options
    bundled_data: tuple[tuple[str, str], ...]  # (field, file under corpora/) when no data is given
    name_suffix: Callable[[Any], str]  # the last part of the default run name, from the config
    side_options: tuple[str, ...] = ()  # options set on both sides' tokenizers (seq2seq --level)

    def options(self) -> dict[str, OptionSpec]:
        """The training options by flat name (what `train(kind=...)` and the CLI command accept)."""
        return option_specs(self.config_class(), self.side_options)

    def run_name(self, config: Any) -> str:
        """The default run directory: checkpoints/<data file stem>-<suffix>."""
        data = next((getattr(config, f) for f in self.config_class.DATA_FIELDS if getattr(config, f)), "data")
        return str(Path("checkpoints") / f"{Path(data).stem}-{self.name_suffix(config)}")

    def recipe(self) -> Any:
        """A fresh training recipe for this kind (imports the model package and torch)."""
        return _import(self.recipe_path)()

    def run_class(self) -> Any:
        """The class that loads a trained run of this kind (imports the model package and torch)."""
        return _import(self.run_path)

    def read_config(self, run_dir: PathLike) -> Any:
        """The saved, migrated and checked config of a run of this kind."""
        from charrnn.core import rundir

        return rundir.read_run_config(Path(run_dir), self.config_class, self.train_command)


KINDS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind(
            name="lm",
            title="language model",
            run_title="language-model",
            article="a language model",
            commands="use `charrnn sample`/`score-sentence` for language models",
            train_command="train",
            summary_title="training summary",
            config_class=RunConfig,
            recipe_path="charrnn.lm.training:LanguageModelRecipe",
            run_path="charrnn.lm.run:LanguageModelRun",
            read_data=_corpus_files,
            bundled_data=(("corpus", "corpora/tinyshakespeare.txt"),),
            name_suffix=lambda config: config.tokenizer.level,
        ),
        ModelKind(
            name="seq2seq",
            title="seq2seq (translation)",
            run_title="seq2seq",
            article="a seq2seq model",
            commands="use `charrnn seq2seq ...` for seq2seq models",
            train_command="seq2seq train",
            summary_title="seq2seq training summary",
            config_class=Seq2SeqRunConfig,
            recipe_path="charrnn.seq2seq.training:Seq2SeqRecipe",
            run_path="charrnn.seq2seq.run:TranslationRun",
            read_data=_one_file("pairs", "seq2seq train takes one file of pairs"),
            bundled_data=(
                ("pairs", "corpora/multi30k-de-en-small.tsv"),
                ("val_pairs", "corpora/multi30k-de-en-small-val.tsv"),
            ),
            name_suffix=lambda config: config.model.attention,
            side_options=SIDE_OPTIONS,
        ),
    )
}

CONFIG_CLASSES: dict[str, type] = {kind.name: kind.config_class for kind in KINDS.values()}


# Keyword arguments of `charrnn.train` / `charrnn.load` / the loaded runs' methods that are on/off switches.
API_SWITCHES = {"overwrite", "greedy", "until_eos", "per_token", "show_attention"}


def keyword(flag: str, placeholder: str | None = None) -> str:
    """How the Python API names the setting of `--flag` in an error: its keyword (`max_time`, `source_file` for
    --src), `overwrite=True` for a switch, `source_file=FILE` before a placeholder."""
    names = _flag_keywords()
    name, switch = names.get(flag, (flag.replace("-", "_"), flag.replace("-", "_") in API_SWITCHES))
    if placeholder:
        return f"{name}={placeholder}"
    return f"{name}=True" if switch else name


def _flag_keywords() -> dict[str, tuple[str, bool]]:
    """Each training option's flag (without its dashes) -> (its keyword, whether it is a switch)."""
    found = {}
    for kind in KINDS.values():
        for name, spec in kind.options().items():
            flag = (spec.flag or "--" + name.replace("_", "-")).split("/")[0][2:]
            found[flag] = (name, spec.annotation is bool)
    return found


api_errors = speaking(keyword, "api")  # decorates the API's functions: their errors name keywords, not flags


def model_kind(name: str) -> ModelKind:
    """The `ModelKind` called `name`, with a one-line error for an unknown name."""
    if name not in KINDS:
        raise CharRNNError(f"Unknown kind of model {name!r}; choose one of: {', '.join(KINDS)}.")
    return KINDS[name]


def kind_of_run(run_dir: PathLike, command: str = "train", expected: str | None = None) -> ModelKind:
    """The kind of the run in `run_dir`; with `expected`, a one-line error when the run is another kind."""
    from charrnn.core import rundir

    run_dir = Path(run_dir)
    name = rundir.run_kind(run_dir, command)
    if name not in KINDS:
        raise CharRNNError(
            f"{run_dir / rundir.CONFIG_FILE} names an unknown kind of run {name!r}; the file is damaged."
        )
    found = KINDS[name]
    if expected is not None and name != expected:
        raise CharRNNError(
            f"{run_dir} holds a {found.run_title} run, not {KINDS[expected].article}; {found.commands}."
        )
    return found


def load(run_dir: PathLike, device: str = "cpu", *, expected: str | None = None) -> Any:
    """Load the trained run in `run_dir` with its kind's loaded-run class (refused unless of kind `expected`)."""
    command = KINDS[expected].train_command if expected in KINDS else "train"
    return kind_of_run(run_dir, command, expected).run_class().load(run_dir, device)


def _import(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)
