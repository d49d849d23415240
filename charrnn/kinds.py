"""The registry of model kinds: the one table the API, the CLI, `charrnn info`, the web page and the
engine look a kind of model up in.

A kind is one subpackage (its config dataclass, model, training recipe with its `Task`, and its
loaded-run class) plus one `ModelKind` entry in `KINDS` below; nothing else in charrnn switches on
the kind (docs/architecture.md, "Adding a model kind"). `charrnn train` trains several kinds and
picks one by `--task` and `--condition` (`training_kind`); the commands that work on a trained run
(`sample`, `score-sentence`, `eval`, `classify`) call the function its kind names in `handlers`. Only the config classes are imported here:
they are plain dataclasses, so the CLI can declare every option without importing torch. The recipe
and the loaded-run class are imported when a run of that kind is trained or loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charrnn.core.errors import CharRNNError, name_api_keywords
from charrnn.core.errors import api_errors as core_api_errors
from charrnn.core.options import OptionSpec, option_specs
from charrnn.labelled.config import ClassifierRunConfig, ConditionalRunConfig
from charrnn.lessons.config import LessonRunConfig
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


def _lesson_task(items: list[str]) -> dict[str, Any]:
    """A lesson's DATA: the name of its task."""
    if len(items) > 1:
        raise CharRNNError(f"charrnn lesson takes one task (adding or copy), got {len(items)}.")
    return {"task": items[0]}


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
    speed_unit: str  # what the training speed counts, per second
    next_step: str  # said after training, with {run} for the run directory
    side_options: tuple[str, ...] = ()  # options set on both sides' tokenizers (seq2seq --level)
    served: bool = True  # `charrnn serve` has a page for its runs
    task: str = ""  # `charrnn train --task ...` (generate or classify) for the kinds `charrnn train` trains
    condition: str = "none"  # `charrnn train --condition ...` (none or label)
    # The run-level commands (`charrnn sample`, `eval`, ...) this kind answers: the command's name -> the
    # "module:function" that does it for a run of this kind, given the run directory and the command's options.
    handlers: dict[str, str] = field(default_factory=dict)

    def options(self) -> dict[str, OptionSpec]:
        """The training options by flat name (what `train(kind=...)` and the CLI command accept)."""
        return option_specs(self.config_class(), self.side_options)

    def run_name(self, config: Any) -> str:
        """The default run directory: checkpoints/<data file stem>-<suffix> (checkpoints/<suffix> without data files)."""
        if not self.config_class.DATA_FIELDS:
            return str(Path("checkpoints") / self.name_suffix(config))
        data = next((getattr(config, f) for f in self.config_class.DATA_FIELDS if getattr(config, f)), "data")
        return str(Path("checkpoints") / f"{Path(data).stem}-{self.name_suffix(config)}")

    def recipe(self) -> Any:
        """A fresh training recipe for this kind (imports the model package and torch)."""
        return _import(self.recipe_path)()

    def run_class(self) -> Any:
        """The class that loads a trained run of this kind (imports the model package and torch)."""
        return _import(self.run_path)

    def handler(self, command: str, run_dir: PathLike = "RUN") -> Callable[..., Any]:
        """The function that runs `charrnn COMMAND` on a run of this kind (a one-line error where it does not apply)."""
        if command not in self.handlers:
            titles = [kind.title for kind in KINDS.values() if command in kind.handlers]
            able = " and ".join(filter(None, [", ".join(titles[:-1]), titles[-1]]))
            raise CharRNNError(
                f"{run_dir} holds a {self.run_title} run; `charrnn {command}` works on {able} runs; {self.commands}."
            )
        return _import(self.handlers[command])

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
            speed_unit="tokens/s",
            next_step="Sample with: charrnn sample {run}",
            task="generate",
            handlers={
                "sample": "charrnn.cli.lm:sample_language_model",
                "score-sentence": "charrnn.cli.lm:score_language_model",
                "eval": "charrnn.cli.inspect:evaluate_language_model",
            },
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
            speed_unit="target tokens/s",
            next_step="Translate with: charrnn seq2seq translate {run} 'a sentence'",
            side_options=SIDE_OPTIONS,
        ),
        ModelKind(
            name="lesson",
            title="lesson (long-range task)",
            run_title="lesson",
            article="a lesson",
            commands="use `charrnn lesson` and `charrnn info` for lesson runs",
            train_command="lesson",
            summary_title="lesson summary",
            config_class=LessonRunConfig,
            recipe_path="charrnn.lessons.training:LessonRecipe",
            run_path="charrnn.lessons.run:LessonRun",
            read_data=_lesson_task,
            bundled_data=(),
            name_suffix=lambda config: f"lesson-{config.lesson.task}-{config.model.cell}-T{config.lesson.length}",
            served=False,
            speed_unit="sequence steps/s",
            next_step="",
        ),
        ModelKind(
            name="classifier",
            title="classifier",
            run_title="classifier",
            article="a classifier",
            commands="use `charrnn classify`/`eval` for classifiers",
            train_command="train",
            summary_title="classifier training summary",
            config_class=ClassifierRunConfig,
            recipe_path="charrnn.labelled.training:ClassifierRecipe",
            run_path="charrnn.labelled.run:ClassifierRun",
            read_data=_one_file("corpus", "labelled data is one folder or file"),
            bundled_data=(("corpus", "corpora/names.tsv"),),
            name_suffix=lambda config: "classifier",
            speed_unit="tokens/s",
            next_step="Classify with: charrnn classify {run} 'a text'",
            task="classify",
            handlers={
                "classify": "charrnn.cli.labelled:classify_texts",
                "eval": "charrnn.cli.labelled:evaluate_labelled",
            },
        ),
        ModelKind(
            name="conditional",
            title="conditional language model",
            run_title="conditional language-model",
            article="a conditional language model",
            commands="use `charrnn sample --label`, `score-sentence --label`, `classify` or `eval` for them",
            train_command="train",
            summary_title="conditional language model training summary",
            config_class=ConditionalRunConfig,
            recipe_path="charrnn.labelled.training:ConditionalRecipe",
            run_path="charrnn.labelled.run:ConditionalRun",
            read_data=_one_file("corpus", "labelled data is one folder or file"),
            bundled_data=(("corpus", "corpora/names.tsv"),),
            name_suffix=lambda config: "conditional",
            speed_unit="tokens/s",
            next_step="Sample with: charrnn sample {run} --label LABEL --num 10",
            task="generate",
            condition="label",
            handlers={
                "sample": "charrnn.cli.labelled:sample_with_label",
                "score-sentence": "charrnn.cli.labelled:score_with_label",
                "classify": "charrnn.cli.labelled:classify_texts",
                "eval": "charrnn.cli.labelled:evaluate_labelled",
            },
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


name_api_keywords(keyword)
api_errors = core_api_errors  # decorates the API's functions: their errors name keywords, not flags


def model_kind(name: str) -> ModelKind:
    """The `ModelKind` called `name`, with a one-line error for an unknown name."""
    if name not in KINDS:
        raise CharRNNError(f"Unknown kind of model {name!r}; choose one of: {', '.join(KINDS)}.")
    return KINDS[name]


TASKS = ("generate", "classify")
CONDITIONS = ("none", "label")


def training_kind(task: str | None = None, condition: str | None = None) -> ModelKind:
    """The kind `charrnn train --task TASK --condition CONDITION` trains (default: generate, none: a language model)."""
    task, condition = task or "generate", condition or "none"
    if task not in TASKS:
        raise CharRNNError(f"Unknown --task {task!r}; choose one of: {', '.join(TASKS)}.")
    if condition not in CONDITIONS:
        raise CharRNNError(f"Unknown --condition {condition!r}; choose one of: {', '.join(CONDITIONS)}.")
    for kind in KINDS.values():
        if kind.task == task and kind.condition == condition:
            return kind
    raise CharRNNError(
        f"--task {task} reads the label as its answer, so it takes no --condition {condition}; drop one of them."
    )


def resolve(kind: str | None, task: str | None = None, condition: str | None = None) -> ModelKind:
    """The kind named by `kind` (lm, seq2seq, ...) or chosen by `task` and `condition` (refused together)."""
    if kind is not None and (task is not None or condition is not None):
        chosen = training_kind(task, condition)
        if chosen.name != kind:
            raise CharRNNError(
                f"kind={kind!r} and task/condition (which choose {chosen.name!r}) disagree; give one."
            )
    return model_kind(kind) if kind is not None else training_kind(task, condition)


def trained_by(command: str) -> list[ModelKind]:
    """The kinds one training command trains (`charrnn train`: lm, classifier, conditional)."""
    return [kind for kind in KINDS.values() if kind.train_command == command]


def handler(run_dir: PathLike, command: str) -> Callable[..., Any]:
    """The function that runs `charrnn COMMAND` on the run in `run_dir`, by the run's kind (`ModelKind.handlers`)."""
    return kind_of_run(run_dir).handler(command, run_dir)


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
