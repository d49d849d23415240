"""A trained run loaded from its directory, for any kind of model: what every loaded-run class shares.

Loading checks everything before it trusts anything: the config (format version, kind, values),
the tokenizer files against the vocabulary sizes the model was built for, the memory the model will
take, the weight shapes in the safetensors header before any tensor is read, the tokenizer
fingerprint recorded with the weights, and finally every weight's shape and finiteness. Nothing is
ever unpickled. A kind's class (`charrnn.lm.run.LanguageModelRun`, `charrnn.seq2seq.run.TranslationRun`)
adds what its model does (sample, score, translate) and says how to read its tokenizer(s) and build
its model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import torch

from charrnn.core import memory, rundir
from charrnn.core.errors import CharRNNError
from charrnn.core.precision import trained_precision
from charrnn.core.runinfo import run_facts
from charrnn.core.runtime import resolve_device
from charrnn.core.tokenizers import SENTENCEPIECE_MODEL, TOKENIZER_JSON, Tokenizer


class LoadedRun:
    """The part of a loaded run that does not depend on its kind: `load` and `info`.

    A subclass sets `kind` and `config_class`, implements `read_tokenizers` and `build_model`, and
    takes `(run_dir, config, *tokenizers, model, note)` in its constructor.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type]

    run_dir: Path
    config: Any
    model: torch.nn.Module
    note: str | None  # set when the weights are not the best checkpoint (see `load`)

    @classmethod
    def read_tokenizers(cls, run_dir: Path, config: Any) -> tuple[Tokenizer, ...]:
        """The run's tokenizer(s), checked against the vocabulary sizes in its config."""
        raise NotImplementedError

    @classmethod
    def build_model(cls, config: Any) -> torch.nn.Module:
        """A freshly initialised model of the shape `config` describes."""
        raise NotImplementedError

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> Any:
        """Load config, tokenizer(s) and the best weights (or, before the first evaluation, the latest)."""
        run_dir = Path(run_dir)
        config = rundir.read_run_config(run_dir, cls.config_class, "train")
        tokenizers = cls.read_tokenizers(run_dir, config)
        if not (run_dir / rundir.WEIGHTS_FILE).is_file() and not (run_dir / rundir.RESUME_FILE).is_file():
            raise CharRNNError(f"{run_dir} is incomplete: {rundir.WEIGHTS_FILE} missing.")
        shapes = memory.check_model_fits(lambda: cls.build_model(config), memory.LOAD_BYTES_PER_PARAMETER)
        tensors, metadata, note = rundir.read_weights(run_dir, expected=shapes)  # shapes checked first
        source = run_dir / (rundir.RESUME_FILE if note else rundir.WEIGHTS_FILE)
        recorded = metadata.get("tokenizer")
        if recorded is not None and recorded != rundir.tokenizers_fingerprint(*tokenizers):
            raise CharRNNError(
                f"The tokenizer files in {run_dir} are not the ones {source.name} was trained with "
                "(same size, different units); restore the run's own tokenizer files."
            )
        model = cls.build_model(config)
        rundir.check_weights(model, tensors, source)
        model.load_state_dict(tensors)
        return cls(run_dir, config, *tokenizers, model.to(resolve_device(device)).eval(), note)

    def info(self) -> dict[str, Any]:
        """What the run is and how far it trained (`charrnn.core.runinfo.run_facts`), its weights and full config."""
        return {
            "kind": self.kind,
            "run_dir": str(self.run_dir),
            **run_facts(self.run_dir, {self.kind: self.config_class}),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "weights": self.note or f"best by validation ({rundir.WEIGHTS_FILE})",
            "precision": trained_precision(self.config.training),
            "config": dataclasses.asdict(self.config),
        }


def read_one_tokenizer(run_dir: Path, config: Any) -> Tokenizer:
    """The tokenizer of a run with one (`config.tokenizer`, `config.model.vocab_size`), checked against its model."""
    missing = [n for n in (TOKENIZER_JSON,) if not (run_dir / n).is_file()]
    if config.tokenizer.level == "subword" and not (run_dir / SENTENCEPIECE_MODEL).is_file():
        missing.append(SENTENCEPIECE_MODEL)
    if not (run_dir / rundir.WEIGHTS_FILE).is_file() and not (run_dir / rundir.RESUME_FILE).is_file():
        missing.append(rundir.WEIGHTS_FILE)
    if missing:
        raise CharRNNError(f"{run_dir} is incomplete: {', '.join(missing)} missing.")
    tokenizer = rundir.read_tokenizer(run_dir)
    if tokenizer.vocab_size != config.model.vocab_size:
        raise CharRNNError(
            f"{run_dir}: the tokenizer has {tokenizer.vocab_size} entries but the model's embedding has "
            f"{config.model.vocab_size} rows (config.json); the tokenizer file belongs to another run."
        )
    return tokenizer
