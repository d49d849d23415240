"""The Python API: `load` a trained run, `train` a language model or a seq2seq model.

The CLI commands are thin wrappers over these functions, so both take the same options with the
same defaults (declared once, on the config dataclasses):

    import charrnn
    run = charrnn.load("checkpoints/tinyshakespeare-char")
    print(run.sample(prime="ROMEO:", length=200, temperature=0.8, seed=1))
    charrnn.train("my.txt", level="word", max_time=5)
    charrnn.train("pairs.tsv", kind="seq2seq", attention="bahdanau", max_steps=600)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charrnn.core import rundir
from charrnn.core.errors import CharRNNError
from charrnn.core.options import OptionSpec, flat_to_paths, option_specs, read_toml, set_path, toml_to_paths
from charrnn.core.resume import apply_resume_settings
from charrnn.core.state import Reporter, TrainResult
from charrnn.core.text import bundled
from charrnn.lm.config import RunConfig
from charrnn.lm.run import LanguageModelRun, read_config
from charrnn.seq2seq.config import SIDE_OPTIONS, Seq2SeqRunConfig
from charrnn.seq2seq.run import TranslationRun, read_seq2seq_config

PathLike = str | Path


def load(run_dir: PathLike, device: str = "cpu") -> LanguageModelRun | TranslationRun:
    """Load a trained run: a `LanguageModelRun` (sample, stream, score) or a `TranslationRun` (translate, score).

    Before a run's first evaluation has written its best weights, the latest weights from its
    resume file are used and `run.note` says so.
    """
    kind = rundir.run_kind(Path(run_dir))
    return (LanguageModelRun if kind == "lm" else TranslationRun).load(run_dir, device)


@dataclass(frozen=True)
class ModelKind:
    """What `train` needs to know about one kind of model."""

    config_class: type
    read_config: Callable[[PathLike], Any]
    data_field: str  # the config field the positional DATA argument sets
    data_fields: tuple[str, ...]  # every config field naming training or validation data
    bundled_data: tuple[tuple[str, str], ...]  # (field, path under the checkout) used when no data is given
    side_options: tuple[str, ...] = ()

    def options(self) -> dict[str, OptionSpec]:
        """The training options by flat name (what `train(kind=...)` and the CLI command accept)."""
        return option_specs(self.config_class(), self.side_options)

    def run_name(self, config: Any) -> str:
        """checkpoints/<data file stem>-<level or attention>."""
        data = next((getattr(config, f) for f in self.data_fields if getattr(config, f)), "data")
        suffix = config.model.attention if hasattr(config.model, "attention") else config.tokenizer.level
        return str(Path("checkpoints") / f"{Path(data).stem}-{suffix}")


KINDS = {
    "lm": ModelKind(
        RunConfig,
        read_config,
        "corpus",
        ("corpus", "val_corpus"),
        (("corpus", "corpora/tinyshakespeare.txt"),),
    ),
    "seq2seq": ModelKind(
        Seq2SeqRunConfig,
        read_seq2seq_config,
        "pairs",
        ("pairs", "source_file", "target_file", "val_pairs", "val_source_file", "val_target_file"),
        (("pairs", "corpora/multi30k-de-en-small.tsv"), ("val_pairs", "corpora/multi30k-de-en-small-val.tsv")),
        SIDE_OPTIONS,
    ),
}


def model_kind(kind: str) -> ModelKind:
    """The `ModelKind` named `kind`, with a one-line error for an unknown name."""
    if kind not in KINDS:
        raise CharRNNError(f"Unknown kind of model {kind!r}; choose one of: {', '.join(KINDS)}.")
    return KINDS[kind]


def effective_config(
    data: PathLike | list[PathLike] | None = None,
    *,
    kind: str | None = None,
    resume: PathLike | None = None,
    config: PathLike | None = None,
    **options: Any,
) -> tuple[Any, list[str]]:
    """The config a `train` call would use, and on resume the changes it makes to the saved one.

    Settings come from the dataclass defaults, then the TOML file `config`, then `options` (which
    win). On resume the run's saved config is the base instead (see `charrnn.core.resume`).
    """
    kind = rundir.run_kind(Path(resume)) if resume is not None else (kind or "lm")
    spec = model_kind(kind)
    defaults = spec.config_class()
    if data is not None:
        options = {**options, **_data_options(kind, data, options.get("cache_dir"))}
    explicit: dict[str, Any] = {}
    if config is not None:
        explicit.update(toml_to_paths(defaults, read_toml(config), f"--config {config}"))
    explicit.update(flat_to_paths(spec.options(), options))
    if resume is not None:
        return _resumed(spec, Path(resume), explicit)
    run_config = defaults
    for path, value in explicit.items():
        set_path(run_config, path, value)
    if not any(getattr(run_config, field) for field in spec.data_fields):
        for field, path in spec.bundled_data:
            found = bundled(Path(path))
            if found is None:
                raise CharRNNError(f"No training data given and the bundled {path} is not here; pass a file.")
            setattr(run_config, field, str(found.resolve()))
    run_config.validate()
    return run_config, []


def _data_options(kind: str, data: PathLike | list[PathLike], cache_dir: PathLike | None) -> dict[str, Any]:
    """The options the positional DATA sets: a language model's corpus may be several files or folders, or "-".

    Standard input is copied into the cache folder (`.charrnn-cache/` here, or --cache-dir) under a
    name made from its content, so that the run can be resumed from that file.
    """
    from charrnn.core.corpus import spool_stdin
    from charrnn.core.token_cache import CACHE_DIR_NAME

    items = list(data) if isinstance(data, list | tuple) else [data]
    if not items:
        return {}
    items = [spool_stdin(Path(cache_dir or CACHE_DIR_NAME)) if str(item) == "-" else item for item in items]
    if kind != "lm":
        if len(items) > 1:
            raise CharRNNError("seq2seq train takes one file of pairs; join them first.")
        return {model_kind(kind).data_field: items[0]}
    return {"corpus": items[0], "more_corpora": [str(Path(item).resolve()) for item in items[1:]]}


def _resumed(spec: ModelKind, run_dir: Path, explicit: dict[str, Any]) -> tuple[Any, list[str]]:
    """The saved config of `run_dir` with the settings given again applied (the resume rule)."""
    saved = spec.read_config(run_dir)
    for field in spec.data_fields:
        given, own = explicit.pop(field, None), getattr(saved, field)
        if given is not None and (not own or Path(given).resolve() != Path(own).resolve()):
            raise CharRNNError(
                f"{given} is not the data this run was trained on ({own}); resume without it, "
                "or start a new run with another --out."
            )
    if not (run_dir / rundir.RESUME_FILE).is_file():
        raise CharRNNError(
            f"{run_dir} has no {rundir.RESUME_FILE}; it cannot be resumed "
            "(start it again with the same --out and --overwrite)."
        )
    missing = [
        getattr(saved, f) for f in spec.data_fields if getattr(saved, f) and not Path(getattr(saved, f)).exists()
    ]
    if missing:
        raise CharRNNError(
            f"The data this run was trained on, {missing[0]}, is missing; resume needs the same data there."
        )
    return saved, apply_resume_settings(saved, explicit)


def restarted_run(out: Path) -> bool:
    """Whether torchrun restarted this training command (after a lost rank) and `out` holds its checkpoint."""
    import os

    return (
        os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") not in ("", "0") and (out / rundir.RESUME_FILE).is_file()
    )


def train(
    data: PathLike | list[PathLike] | None = None,
    *,
    kind: str | None = None,
    out: PathLike | None = None,
    resume: PathLike | None = None,
    overwrite: bool = False,
    config: PathLike | None = None,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] | None = None,
    **options: Any,
) -> TrainResult:
    """Train a model and write its run directory; returns what the training achieved.

    kind: "lm" (default) trains a language model on `data`: a text file, a folder of them, a list of
        files and folders, or "-" for standard input (default: the bundled Tiny Shakespeare); "seq2seq" an encoder–decoder on the TSV of pairs `data` (or the
        options source_file/target_file; default: the bundled Multi30k de-en slice).
    out: the run directory (default checkpoints/<data>-<level>, or -<attention> for seq2seq).
    resume: continue this run instead: its saved config is the base, and only options that may
        change mid-run (stopping rules, learning rate, cadence, device, ...) may differ.
    config: a TOML file of settings, which keyword options override.
    options: the flat option names of `charrnn train` / `charrnn seq2seq train`: level="word",
        hidden=512, max_time=5, val_corpus="valid.txt", attention="bahdanau", ...
    reporter, should_stop: progress callbacks (the CLI shows progress and handles Ctrl-C with them).
    """
    from charrnn.core import engine
    from charrnn.lm.training import LanguageModelRecipe
    from charrnn.seq2seq.training import Seq2SeqRecipe

    if resume is None and out is not None and restarted_run(Path(out)):
        resume, data = out, None  # torchrun --max-restarts started this command again after a lost rank
    run_config, _ = effective_config(data, kind=kind, resume=resume, config=config, **options)
    recipe = LanguageModelRecipe() if run_config.kind == "lm" else Seq2SeqRecipe()
    run_dir = Path(resume or out or KINDS[run_config.kind].run_name(run_config))
    return engine.train(
        recipe,
        run_config,
        run_dir,
        resume=resume is not None,
        overwrite=overwrite,
        reporter=reporter,
        should_stop=should_stop,
    )
