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
    """Load a trained run with its kind's class: a `LanguageModelRun` (sample, stream, score) or a
    `TranslationRun` (translate, score).

    Before a run's first evaluation has written its best weights, the latest weights from its
    resume file are used and `run.note` says so.
    """
    return kinds.load(run_dir, device)


@kinds.api_errors
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
    spec = kinds.kind_of_run(resume) if resume is not None else kinds.model_kind(kind or "lm")
    defaults = spec.config_class()
    if data is not None:
        options = {**options, **_data_options(spec, data, options.get("cache_dir"))}
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
    if not any(getattr(run_config, field) for field in spec.config_class.DATA_FIELDS):
        for field, path in spec.bundled_data:
            found = bundled(Path(path))
            if found is None:
                raise CharRNNError(f"No training data given and the bundled {path} is not here; pass a file.")
            setattr(run_config, field, str(found.resolve()))
    run_config.validate()
    return run_config, []


def _data_options(
    spec: kinds.ModelKind, data: PathLike | list[PathLike], cache_dir: PathLike | None
) -> dict[str, Any]:
    """The options the positional DATA sets (a language model's corpus may be several files or folders), or "-".

    Standard input is copied into the cache folder (stdin/ in the user cache folder, or --cache-dir)
    under a name made from its content, so that the run can be resumed from that file.
    """
    from charrnn.core.corpus import spool_stdin
    from charrnn.core.user_cache import cache_folder

    items = list(data) if isinstance(data, list | tuple) else [data]
    if not items:
        return {}
    folder = Path(cache_dir) if cache_dir else cache_folder("stdin")
    items = [spool_stdin(folder) if str(item) == "-" else item for item in items]
    return spec.read_data(items)


@kinds.api_errors
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

    if resume is None and out is not None and resume_run.restarted(Path(out)):
        resume, data = out, None  # torchrun --max-restarts started this command again after a lost rank
    run_config, _ = effective_config(data, kind=kind, resume=resume, config=config, **options)
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
