"""Seq2seq run directories: config.json, one tokenizer per side (source/, target/), and the loaded model."""

from __future__ import annotations

from pathlib import Path

from charrnn.core import rundir
from charrnn.core.errors import CharRNNError, api_errors
from charrnn.core.loaded_run import LoadedRun
from charrnn.core.runtime import scoring_autocast
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
    return rundir.read_run_config(Path(run_dir), Seq2SeqRunConfig, "seq2seq train")


def read_side_tokenizers(run_dir: Path) -> tuple[Tokenizer, Tokenizer]:
    """The source and target tokenizers of a seq2seq run."""
    tokenizers = []
    for side in (SOURCE_DIR, TARGET_DIR):
        if not (Path(run_dir) / side).is_dir():
            raise CharRNNError(f"{Path(run_dir) / side} is missing; the run directory is incomplete.")
        tokenizers.append(rundir.read_tokenizer(Path(run_dir) / side))
    return tokenizers[0], tokenizers[1]


class TranslationRun(LoadedRun):
    """A seq2seq model loaded from a run directory (`charrnn.load`)."""

    kind = "seq2seq"
    config_class = Seq2SeqRunConfig

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
    def read_tokenizers(cls, run_dir: Path, config: Seq2SeqRunConfig) -> tuple[Tokenizer, Tokenizer]:
        tokenizers = read_side_tokenizers(run_dir)
        for side, tokenizer, size in zip(
            ("source", "target"),
            tokenizers,
            (config.model.source_vocab_size, config.model.target_vocab_size),
            strict=True,
        ):
            if tokenizer.vocab_size != size:
                raise CharRNNError(
                    f"{run_dir}: the {side} tokenizer has {tokenizer.vocab_size} entries but the model was built "
                    f"for {size}; the tokenizer file belongs to another run."
                )
        return tokenizers

    @classmethod
    def build_model(cls, config: Seq2SeqRunConfig) -> Seq2Seq:
        return Seq2Seq(config.model)

    @api_errors
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

    @api_errors
    def score(self, pairs: list[tuple[str, str]], *, precision: str = "fp32") -> list[SentenceScore]:
        """log P(target | source) of each (source, target) pair, with per-token detail."""
        sources = [source for source, _ in pairs]
        targets = [target for _, target in pairs]
        device = next(self.model.parameters()).device
        with scoring_autocast(device, precision, self.config.model.cell):
            return score_pairs(self.model, self.source_tokenizer, self.target_tokenizer, sources, targets)

    @api_errors
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
