"""Gradient flow of whole runs, through the public API: measure a trained run, train one run per cell.

`charrnn.lessons.gradients` holds the measurement on a model; this module finds runs with the
registry and trains the `--cells` comparison with `charrnn.api.train`, as a user's script would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from charrnn.core.errors import CharRNNError
from charrnn.lessons.gradients import SMALL_MODEL, GradientFlow, cell_sizes, loaded_run_flow


def run_gradient_flow(
    run_dir: str | Path,
    text: str | None = None,
    *,
    horizon: int = 200,
    positions: int = 32,
    warmup: int = 50,
    untrained: bool = False,
    device: str = "cpu",
) -> GradientFlow:
    """`gradient_flow` of a trained language-model run on `text` (default: the start of the run's validation text).

    With `untrained`, a freshly initialised model of the run's configuration (seeded with the run's
    seed) instead of the trained weights.
    """
    from charrnn import kinds

    run = kinds.load(run_dir, device, expected="lm")
    return loaded_run_flow(run, text, horizon=horizon, positions=positions, warmup=warmup, untrained=untrained)


def train_cells(
    corpus: str | Path | None,
    cells: Sequence[str],
    minutes: float,
    out: str | Path,
    *,
    template: str | Path | None = None,
    overwrite: bool = False,
    reporter: Any = None,
    should_stop: Callable[[], bool] | None = None,
    **options: Any,
) -> dict[str, Path]:
    """Train one language model per cell on the same corpus for `minutes` each, at about the same parameter count.

    The shape is `template`'s (a run: its corpus, tokenizer level, embed, layers, batch and bptt, and
    the parameter count of an LSTM of its hidden size), else `SMALL_MODEL` on `corpus` (default: the bundled Tiny
    Shakespeare). Each run goes to `out`/<cell> through `charrnn.train`, so it is an ordinary run
    directory; `options` are further training options. Once `should_stop` says so, no further cell starts.
    """
    from charrnn import api
    from charrnn.core.config import CELLS

    unknown = [c for c in cells if c not in CELLS]
    if unknown or not cells:
        raise CharRNNError(f"--cells takes a comma-separated list of: {', '.join(CELLS)}; got {','.join(cells)}.")
    if not minutes > 0:
        raise CharRNNError(f"--minutes must be a positive number, got {minutes}.")
    model, level = dict(SMALL_MODEL), options.pop("level", "char")
    if template is not None:
        from charrnn.lm.run import read_config

        saved = read_config(template)
        model = {"embed": saved.model.embed, "hidden": saved.model.hidden, "layers": saved.model.layers}
        corpus, level = corpus or saved.corpus, saved.tokenizer.level
        options = {"batch_size": saved.training.batch_size, "bptt": saved.training.bptt, **options}
    vocab = _vocab_size(corpus, level, options)
    sizes = cell_sizes(cells, model, vocab)
    runs = {}
    for cell in cells:
        if should_stop is not None and should_stop():
            break
        run_dir = Path(out) / cell
        api.train(corpus, out=run_dir, overwrite=overwrite, reporter=reporter, should_stop=should_stop,
                      cell=cell, hidden=sizes[cell], embed=model["embed"], layers=model["layers"], level=level,
                      max_time=minutes, **options)  # fmt: skip
        runs[cell] = run_dir
    return runs


def _vocab_size(corpus: str | Path | None, level: str, options: dict[str, Any]) -> int:
    """The vocabulary a run on `corpus` at `level` will have (the tokenizer is built into the token cache now)."""
    from charrnn import api
    from charrnn.lm.training import prepare_corpus

    config, _ = api.effective_config(corpus, level=level, **options)
    return prepare_corpus(config).tokenizer.vocab_size
