"""The Python API: `load` a trained run, `train` a language model, `train_seq2seq` an encoder–decoder.

The CLI commands are thin wrappers over these functions, so both take the same options with the
same defaults (declared once, on the config dataclasses):

    import charrnn
    run = charrnn.load("checkpoints/tinyshakespeare-char")
    print(run.sample(prime="ROMEO:", length=200, temperature=0.8, seed=1))
    charrnn.train("my.txt", level="word", max_time=5)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from charrnn.core import rundir
from charrnn.core.errors import CharRNNError
from charrnn.core.options import flat_to_paths, option_specs, read_toml, set_path, toml_to_paths
from charrnn.core.resume import apply_resume_settings
from charrnn.core.state import Reporter, TrainResult
from charrnn.core.text import bundled
from charrnn.lm.config import RunConfig
from charrnn.lm.run import LanguageModelRun, read_config
from charrnn.seq2seq.config import SIDE_OPTIONS, Seq2SeqRunConfig
from charrnn.seq2seq.run import TranslationRun, read_seq2seq_config

PathLike = str | Path
DEFAULT_CORPUS = Path("corpora") / "tinyshakespeare.txt"
DEFAULT_PAIRS = Path("corpora") / "multi30k-de-en-small.tsv"
DEFAULT_VAL_PAIRS = Path("corpora") / "multi30k-de-en-small-val.tsv"


def load(run_dir: PathLike, device: str = "cpu") -> LanguageModelRun | TranslationRun:
    """Load a trained run: a `LanguageModelRun` (sample, stream, score) or a `TranslationRun` (translate, score).

    Before a run's first evaluation has written its best weights, the latest weights from its
    resume file are used and `run.note` says so.
    """
    kind = rundir.run_kind(Path(run_dir))
    return (LanguageModelRun if kind == "lm" else TranslationRun).load(run_dir, device)


def lm_options() -> dict[str, Any]:
    """The language model's training options by flat name (what `train` and `charrnn train` accept)."""
    return option_specs(RunConfig())


def seq2seq_options() -> dict[str, Any]:
    """The seq2seq model's training options by flat name (what `train_seq2seq` and `charrnn seq2seq train` accept)."""
    return option_specs(Seq2SeqRunConfig(), SIDE_OPTIONS)


def _explicit_settings(defaults: Any, specs: dict[str, Any], config_file: PathLike | None, options: dict) -> dict:
    """Dotted-path settings the user gave: from a TOML file, then keyword options (which win)."""
    explicit: dict[str, Any] = {}
    if config_file is not None:
        explicit.update(toml_to_paths(defaults, read_toml(config_file), f"--config {config_file}"))
    explicit.update(flat_to_paths(specs, options))
    return explicit


def _resumed(run_dir: PathLike, saved: Any, explicit: dict[str, Any], data_paths: tuple[str, ...]) -> list[str]:
    """Apply settings given again to a saved config (the resume rule); refuse other data than the run's."""
    run_dir = Path(run_dir)
    for path in data_paths:
        if path in explicit:
            given, own = explicit.pop(path), getattr(saved, path)
            if given is not None and (own is None or Path(given).resolve() != Path(own).resolve()):
                raise CharRNNError(
                    f"{given} is not the data this run was trained on ({own}); resume without it, "
                    "or start a new run with another --out."
                )
    if not (run_dir / rundir.RESUME_FILE).is_file():
        raise CharRNNError(
            f"{run_dir} has no {rundir.RESUME_FILE}; it cannot be resumed "
            "(start it again with the same --out and --overwrite)."
        )
    return apply_resume_settings(saved, explicit)


def lm_config(
    corpus: PathLike | None = None,
    *,
    val: PathLike | None = None,
    resume: PathLike | None = None,
    config: PathLike | None = None,
    **options: Any,
) -> tuple[RunConfig, list[str]]:
    """The effective config of a `train` call, and on resume the changes to the saved one."""
    explicit = _explicit_settings(RunConfig(), lm_options(), config, options)
    if corpus is not None:
        explicit["corpus"] = str(Path(corpus).resolve())  # absolute, so --resume works from any directory
    if val is not None:
        explicit["val_corpus"] = str(Path(val).resolve())
    if resume is not None:
        saved = read_config(resume)
        changes = _resumed(resume, saved, explicit, ("corpus", "val_corpus"))
        if not Path(saved.corpus).is_file():
            raise CharRNNError(
                f"The corpus this run was trained on, {saved.corpus}, is missing; resume needs the same text there."
            )
        return saved, changes
    run_config = RunConfig()
    for path, value in explicit.items():
        set_path(run_config, path, value)
    if not run_config.corpus:
        found = bundled(DEFAULT_CORPUS)
        if found is None:
            raise CharRNNError(f"No corpus given and the bundled {DEFAULT_CORPUS} is not here; pass a CORPUS file.")
        run_config.corpus = str(found.resolve())
    run_config.validate()
    return run_config, []


def train(
    corpus: PathLike | None = None,
    *,
    out: PathLike | None = None,
    val: PathLike | None = None,
    resume: PathLike | None = None,
    overwrite: bool = False,
    config: PathLike | None = None,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] | None = None,
    **options: Any,
) -> TrainResult:
    """Train a language model on `corpus` (default: the bundled Tiny Shakespeare) into `out`.

    `options` are the flat option names of `charrnn train` (level="word", hidden=512, max_time=5, ...);
    `config` is a TOML file of the same settings, which keyword options override. With `resume=RUN`
    the run's saved config is the base and only options that may change mid-run are accepted.
    """
    from charrnn.lm.training import train_language_model

    run_config, changes = lm_config(corpus, val=val, resume=resume, config=config, **options)
    if resume is not None:
        run_dir = Path(resume)
    else:
        run_dir = Path(out) if out is not None else default_run_dir(run_config.corpus, run_config.tokenizer.level)
    return train_language_model(
        run_config,
        run_dir,
        resume=resume is not None,
        overwrite=overwrite,
        reporter=reporter,
        should_stop=should_stop,
        changes=changes,
    )


def default_run_dir(data: str, suffix: str) -> Path:
    """checkpoints/<data file stem>-<suffix>."""
    return Path("checkpoints") / f"{Path(data).stem}-{suffix}"


SEQ2SEQ_DATA = ("pairs", "source_file", "target_file", "val_pairs", "val_source_file", "val_target_file")


def seq2seq_config(
    pairs: PathLike | None = None,
    *,
    src: PathLike | None = None,
    tgt: PathLike | None = None,
    val: PathLike | None = None,
    val_src: PathLike | None = None,
    val_tgt: PathLike | None = None,
    resume: PathLike | None = None,
    config: PathLike | None = None,
    **options: Any,
) -> tuple[Seq2SeqRunConfig, list[str]]:
    """The effective config of a `train_seq2seq` call, and on resume the changes to the saved one."""
    explicit = _explicit_settings(Seq2SeqRunConfig(), seq2seq_options(), config, options)
    given = dict(zip(SEQ2SEQ_DATA, (pairs, src, tgt, val, val_src, val_tgt), strict=True))
    for path, value in given.items():
        if value is not None:
            explicit[path] = str(Path(value).resolve())  # absolute, so --resume works from any directory
    if resume is not None:
        saved = read_seq2seq_config(resume)
        return saved, _resumed(resume, saved, explicit, SEQ2SEQ_DATA)
    run_config = Seq2SeqRunConfig()
    for path, value in explicit.items():
        set_path(run_config, path, value)
    if not (run_config.pairs or run_config.source_file or run_config.target_file):
        found = bundled(DEFAULT_PAIRS)
        if found is None:
            raise CharRNNError(
                f"No PAIRS given and the bundled {DEFAULT_PAIRS} is not here; pass a PAIRS file or --src/--tgt."
            )
        run_config.pairs = str(found.resolve())
        if not (run_config.val_pairs or run_config.val_source_file or run_config.val_target_file):
            found_val = bundled(DEFAULT_VAL_PAIRS)
            run_config.val_pairs = str(found_val.resolve()) if found_val is not None else None
    run_config.validate()
    return run_config, []


def train_seq2seq(
    pairs: PathLike | None = None,
    *,
    src: PathLike | None = None,
    tgt: PathLike | None = None,
    val: PathLike | None = None,
    val_src: PathLike | None = None,
    val_tgt: PathLike | None = None,
    out: PathLike | None = None,
    resume: PathLike | None = None,
    overwrite: bool = False,
    config: PathLike | None = None,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] | None = None,
    **options: Any,
) -> TrainResult:
    """Train an encoder–decoder on sentence pairs (a TSV, or `src`/`tgt` parallel files) into `out`.

    Without data, the bundled Multi30k German–English slice. `options` are the flat option names of
    `charrnn seq2seq train` (attention="bahdanau", level="subword", max_steps=600, ...).
    """
    from charrnn.seq2seq.training import train_seq2seq as train_pairs

    run_config, changes = seq2seq_config(
        pairs, src=src, tgt=tgt, val=val, val_src=val_src, val_tgt=val_tgt, resume=resume, config=config, **options
    )
    if resume is not None:
        run_dir = Path(resume)
    else:
        data = run_config.pairs or run_config.source_file or "pairs"
        run_dir = Path(out) if out is not None else default_run_dir(data, run_config.model.attention)
    return train_pairs(
        run_config,
        run_dir,
        resume=resume is not None,
        overwrite=overwrite,
        reporter=reporter,
        should_stop=should_stop,
        changes=changes,
    )
