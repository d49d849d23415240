"""The Python API: `load` a trained run, `train` a language model, a seq2seq model or a labelled-text model.

The CLI commands are thin wrappers over these functions, so both take the same options with the
same defaults (declared once, on the config dataclasses):

    import charrnn
    run = charrnn.load("checkpoints/tinyshakespeare-char")
    print(run.sample(prime="ROMEO:", length=200, temperature=0.8, seed=1))
    charrnn.train("my.txt", level="word", max_time=5)
    charrnn.train("pairs.tsv", kind="seq2seq", attention="bahdanau", max_steps=600)
    charrnn.train("names/", task="classify", max_time=3)        # a classifier (N vs 1)
    charrnn.train("names/", condition="label", max_time=3)      # a language model conditioned on the label
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from charrnn import kinds
from charrnn.core import resume as resume_run
from charrnn.core.errors import CharRNNError
from charrnn.core.options import flat_to_paths, read_toml, set_path, toml_to_paths
from charrnn.core.state import Reporter, TrainResult
from charrnn.core.text import bundled

PathLike = str | Path


@kinds.api_errors
def load(run_dir: PathLike, device: str = "cpu") -> Any:
    """Load a trained run with its kind's class: a `LanguageModelRun` (sample, stream, score), a
    `TranslationRun` (translate, score), a `ClassifierRun` (classify, evaluate) or a `ConditionalRun`
    (sample with a label, score given a label, classify).

    Before a run's first evaluation has written its best weights, the latest weights from its
    resume file are used and `run.note` says so.
    """
    return kinds.load(run_dir, device)


@kinds.api_errors
def effective_config(
    data: PathLike | list[PathLike] | None = None,
    *,
    kind: str | None = None,
    task: str | None = None,
    condition: str | None = None,
    resume: PathLike | None = None,
    config: PathLike | None = None,
    **options: Any,
) -> tuple[Any, list[str]]:
    """The config a `train` call would use, and on resume the changes it makes to the saved one.

    Settings come from the dataclass defaults, then the TOML file `config`, then `options` (which
    win). On resume the run's saved config is the base instead (see `charrnn.core.resume`).
    """
    chosen = kinds.resolve(kind, task, condition) if kind or task or condition else None
    spec = kinds.kind_of_run(resume) if resume is not None else chosen or kinds.model_kind("lm")
    if resume is not None and chosen is not None and chosen.name != spec.name:
        raise CharRNNError(
            f"{resume} holds a {spec.run_title} run, not {chosen.article}; resume it without --task/--condition."
        )
    _check_options(spec, options)
    defaults = spec.config_class()
    if data is not None:
        options = {**options, **_data_options(spec, data, options.get("cache_dir"), options.get("max_bytes"))}
    explicit: dict[str, Any] = {}
    if config is not None:
        explicit.update(toml_to_paths(defaults, read_toml(config), f"--config {config}", Path(config).parent))
    explicit.update(flat_to_paths(spec.options(), options))
    if resume is not None:
        resumed = resume_run.start(resume, spec.read_config(resume), explicit)
        return resumed.config, resumed.changes
    run_config = defaults
    for path, value in explicit.items():
        set_path(run_config, path, value)
    run_config.complete(set(explicit))
    if not any(getattr(run_config, field) for field in spec.config_class.DATA_FIELDS):
        for field, path in spec.bundled_data:
            found = bundled(Path(path))
            if found is None:
                raise CharRNNError(f"No training data given and the bundled {path} is not here; pass a file.")
            setattr(run_config, field, str(found.resolve()))
    run_config.validate()
    return run_config, []


def _check_options(spec: kinds.ModelKind, options: dict[str, Any]) -> None:
    """Refuse, in one line, an option that belongs to another kind trained by the same command (--bptt with --task classify)."""
    own = spec.options()
    for name in options:
        if name in own:
            continue
        others = [k for k in kinds.trained_by(spec.train_command) if name in k.options()]
        if others:
            flag = others[0].options()[name].cli_flag.split("/")[0]
            raise CharRNNError(
                f"{flag} is an option of {' and '.join(k.article for k in others)}, not of {spec.article}; drop it."
            )


def _data_options(
    spec: kinds.ModelKind,
    data: PathLike | list[PathLike],
    cache_dir: PathLike | None,
    max_bytes: int | None = None,
) -> dict[str, Any]:
    """The options the positional DATA sets (a language model's corpus may be several files or folders), or "-".

    Standard input is copied into the cache folder (stdin/ in the user cache folder, or --cache-dir)
    under a name made from its content, so that the run can be resumed from that file.
    """
    from charrnn.core.corpus import check_corpus_path, spool_stdin
    from charrnn.core.user_cache import cache_folder

    items = list(data) if isinstance(data, list | tuple) else [data]
    if not items:
        return {}
    for item in items:
        check_corpus_path(item)
    folder = Path(cache_dir) if cache_dir else cache_folder("stdin")
    items = [spool_stdin(folder, max_bytes) if str(item) == "-" else item for item in items]
    return spec.read_data(items)


def check_resume_or_overwrite(resume: Any, overwrite: bool) -> None:
    """Refuse --resume with --overwrite: one continues a run, the other replaces it."""
    if resume is not None and overwrite:
        raise CharRNNError(
            "--resume continues a run and --overwrite replaces it; give one of them (the run is unchanged)."
        )


@kinds.api_errors
def train(
    data: PathLike | list[PathLike] | None = None,
    *,
    kind: str | None = None,
    task: str | None = None,
    condition: str | None = None,
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
        options source_file/target_file; default: the bundled Multi30k de-en slice); "lesson" a cell on
        a long-range task, `data` naming it: "adding" or "copy" (`charrnn.lessons`).
    task, condition: what `charrnn train --task/--condition` choose, on labelled `data` (a folder of label
        files or folders, a TSV or JSONL file): task="classify" a classifier, condition="label" a language
        model conditioned on the label (task="generate", the default, with condition="none" is the language model).
    out: the run directory (default checkpoints/<data>-<level>, or -<attention> for seq2seq).
    resume: continue this run instead: its saved config is the base, and only options that may
        change mid-run (stopping rules, learning rate, cadence, device, ...) may differ.
    config: a TOML file of settings, which keyword options override.
    options: the flat option names of `charrnn train` / `charrnn seq2seq train`: level="word",
        hidden=512, max_time=5, val_corpus="valid.txt", attention="bahdanau", ...
    reporter, should_stop: progress callbacks (the CLI shows progress and handles Ctrl-C with them).
    """
    from charrnn.core import engine

    check_resume_or_overwrite(resume, overwrite)
    if resume is None and out is not None and resume_run.restarted(Path(out)):
        resume, data = out, None  # torchrun --max-restarts started this command again after a lost rank
        overwrite = False  # the first start replaced the old run; the restart continues the new one
    run_config, _ = effective_config(
        data, kind=kind, task=task, condition=condition, resume=resume, config=config, **options
    )
    spec = kinds.model_kind(run_config.kind)
    run_dir = Path(resume or out or spec.run_name(run_config))
    return engine.train(
        spec.recipe(),
        run_config,
        run_dir,
        resume=resume is not None,
        overwrite=overwrite,
        reporter=reporter,
        should_stop=should_stop,
    )
