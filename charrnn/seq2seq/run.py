"""Seq2seq run directories: config.json, one tokenizer per side (source/, target/), and the loaded model."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from charrnn.core import memory, rundir
from charrnn.core.errors import CharRNNError
from charrnn.core.precision import trained_precision
from charrnn.core.runinfo import run_facts
from charrnn.core.runtime import resolve_device, scoring_autocast
from charrnn.core.scoring import SentenceScore
from charrnn.core.tokenizers import Tokenizer
from charrnn.seq2seq.config import Seq2SeqRunConfig
from charrnn.seq2seq.decoding import TranslateSettings, Translation, translate
from charrnn.seq2seq.evaluation import EvalResult, evaluate_pairs
from charrnn.seq2seq.model import Seq2Seq
from charrnn.seq2seq.scoring import score_pairs

SOURCE_DIR, TARGET_DIR = "source", "target"  # each side's tokenizer files live in its own subfolder


def read_seq2seq_config(run_dir: str | Path) -> Seq2SeqRunConfig:
    """Read, migrate and check the config.json of a seq2seq run directory."""
    return rundir.read_run_config(Path(run_dir), Seq2SeqRunConfig, "seq2seq", "seq2seq train")


def tokenizers_fingerprint(source_tokenizer: Tokenizer, target_tokenizer: Tokenizer) -> str:
    """A short hash of both tokenizers, stored with the weights so a swapped tokenizer file is caught."""
    return rundir.tokenizer_fingerprint(source_tokenizer) + "-" + rundir.tokenizer_fingerprint(target_tokenizer)


def read_side_tokenizers(run_dir: Path) -> tuple[Tokenizer, Tokenizer]:
    """The source and target tokenizers of a seq2seq run."""
    tokenizers = []
    for side in (SOURCE_DIR, TARGET_DIR):
        if not (Path(run_dir) / side).is_dir():
            raise CharRNNError(f"{Path(run_dir) / side} is missing; the run directory is incomplete.")
        tokenizers.append(rundir.read_tokenizer(Path(run_dir) / side))
    return tokenizers[0], tokenizers[1]


class TranslationRun:
    """A seq2seq model loaded from a run directory (`charrnn.load`)."""

    kind = "seq2seq"

    def __init__(
        self,
        run_dir: Path,
        config: Seq2SeqRunConfig,
        source_tokenizer: Tokenizer,
        target_tokenizer: Tokenizer,
        model: Seq2Seq,
        note: str | None,
    ) -> None:
        self.run_dir, self.config, self.model, self.note = run_dir, config, model, note
        self.source_tokenizer, self.target_tokenizer = source_tokenizer, target_tokenizer

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> TranslationRun:
        """Load config, both tokenizers and the best weights (or, before the first evaluation, the latest)."""
        run_dir = Path(run_dir)
        config = read_seq2seq_config(run_dir)
        source_tokenizer, target_tokenizer = read_side_tokenizers(run_dir)
        for side, tokenizer, size in (
            ("source", source_tokenizer, config.model.source_vocab_size),
            ("target", target_tokenizer, config.model.target_vocab_size),
        ):
            if tokenizer.vocab_size != size:
                raise CharRNNError(
                    f"{run_dir}: the {side} tokenizer has {tokenizer.vocab_size} entries but the model was built "
                    f"for {size}; the tokenizer file belongs to another run."
                )
        if not (run_dir / rundir.WEIGHTS_FILE).is_file() and not (run_dir / rundir.RESUME_FILE).is_file():
            raise CharRNNError(f"{run_dir} is incomplete: {rundir.WEIGHTS_FILE} missing.")
        shapes = memory.check_model_fits(lambda: Seq2Seq(config.model), memory.LOAD_BYTES_PER_PARAMETER)
        tensors, metadata, note = rundir.read_weights(run_dir, expected=shapes)  # shapes checked first
        model = Seq2Seq(config.model)
        source = run_dir / (rundir.RESUME_FILE if note else rundir.WEIGHTS_FILE)
        rundir.check_weights(model, tensors, source)
        model.load_state_dict(tensors)
        recorded = metadata.get("tokenizer")
        if recorded is not None and recorded != tokenizers_fingerprint(source_tokenizer, target_tokenizer):
            raise CharRNNError(
                f"The tokenizer files in {run_dir} are not the ones {source.name} was trained with; "
                "restore the run's own source/ and target/ folders."
            )
        return cls(
            run_dir, config, source_tokenizer, target_tokenizer, model.to(resolve_device(device)).eval(), note
        )

    def translate(
        self,
        sentences: str | list[str],
        beam: int = 1,
        *,
        max_length: int | None = None,
        length_penalty: float = 1.0,
        with_attention: bool = False,
    ) -> list[Translation]:
        """Translate each sentence: greedy (beam 1, batched) or beam search."""
        settings = TranslateSettings(beam=beam, max_length=max_length, length_penalty=length_penalty)
        texts = [sentences] if isinstance(sentences, str) else sentences
        return translate(
            self.model,
            self.source_tokenizer,
            self.target_tokenizer,
            texts,
            settings,
            with_attention=with_attention,
        )

    def score(self, pairs: list[tuple[str, str]], *, precision: str = "fp32") -> list[SentenceScore]:
        """log P(target | source) of each (source, target) pair, with per-token detail."""
        sources = [source for source, _ in pairs]
        targets = [target for _, target in pairs]
        device = next(self.model.parameters()).device
        with scoring_autocast(device, precision, self.config.model.cell):
            return score_pairs(self.model, self.source_tokenizer, self.target_tokenizer, sources, targets)

    def evaluate(
        self, sources: list[str], references: list[str], beam: int = 1, *, max_length: int | None = None,
        length_penalty: float = 1.0, precision: str = "fp32",
    ) -> EvalResult:  # fmt: skip
        """Corpus BLEU, exact match and log P(reference | source) of the model's translations (fp32 or bf16)."""
        settings = TranslateSettings(beam=beam, max_length=max_length, length_penalty=length_penalty)
        device = next(self.model.parameters()).device
        with scoring_autocast(device, precision, self.config.model.cell):
            return evaluate_pairs(
                self.model, self.source_tokenizer, self.target_tokenizer, sources, references, settings
            )

    def info(self) -> dict[str, Any]:
        """What the run is and how far it trained (`charrnn.core.runinfo.run_facts`), its weights and full config."""
        return {
            "kind": self.kind,
            "run_dir": str(self.run_dir),
            "level": self.config.target_tokenizer.level,
            "vocab_size": [self.source_tokenizer.vocab_size, self.target_tokenizer.vocab_size],
            **rundir.run_summary(self.run_dir),
            **run_facts(self.run_dir),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "weights": self.note or f"best by validation ({rundir.WEIGHTS_FILE})",
            "precision": trained_precision(self.config.training),
            "config": dataclasses.asdict(self.config),
        }
