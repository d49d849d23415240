"""Configuration of a seq2seq run: the encoder–decoder's shape, its training settings, the run as a whole.

Where seq2seq wants another default than the language model (word-level tokens, batches of sentence
pairs, a plateau schedule), the default is set here, in the dataclass, and the CLI reads it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from charrnn.core.config import CELLS, RunConfigBase, TokenizerConfig, TrainConfig, at_least, choice
from charrnn.core.errors import CharRNNError
from charrnn.core.options import option
from charrnn.core.version import FORMAT_VERSION, __version__

ATTENTIONS = ("none", "bahdanau", "luong-dot", "luong-general")
CONTEXTS = ("init", "input")
SIDE_OPTIONS = ("level", "vocab_size")  # tokenizer options that may differ between source and target


@dataclass
class Seq2SeqConfig:
    """Shape of the encoder–decoder."""

    source_vocab_size: int = option(0, "Source vocabulary size, from the source tokenizer.", derived=True)
    target_vocab_size: int = option(0, "Target vocabulary size, from the target tokenizer.", derived=True)
    cell: str = option("gru", "Recurrent cell: gru, lstm or rnn.")
    embed: int = option(256, "Embedding size (both sides).")
    hidden: int = option(256, "Decoder units (a bidirectional encoder splits them between its directions).")
    layers: int = option(1, "Stacked layers in the encoder and the decoder.")
    dropout: float = option(0.2, "Dropout on embeddings, between layers, before the softmax.")
    bidirectional: bool = option(True, "Read the source both ways.", flag="--bidirectional/--unidirectional")
    attention: str = option(
        "luong-general", "none, bahdanau (additive, step loop) or luong-dot/luong-general (fused)."
    )
    context: str = option(
        "init", "With --attention none: init (c starts the decoder) or input (also fed every step)."
    )
    attention_size: int = option(0, "Bahdanau's inner size (0: --hidden).")
    scaled_scores: bool = option(
        True,
        "luong-dot/luong-general: divide the scores by sqrt(--hidden), as scaled dot-product attention does, "
        "so that the softmax does not saturate (runs before charrnn 0.3 kept them unscaled).",
        flag="--scaled-scores/--unscaled-scores",
    )

    @property
    def output_size(self) -> int:
        """How many classes the decoder's softmax chooses among: the target vocabulary."""
        return self.target_vocab_size

    def validate(self) -> None:
        choice("cell", self.cell, CELLS)
        choice("attention", self.attention, ATTENTIONS)
        choice("context", self.context, CONTEXTS)
        for name in ("embed", "hidden", "layers"):
            at_least(name, getattr(self, name), 1)
        for name, most in (("embed", 65_536), ("hidden", 65_536), ("layers", 64), ("attention_size", 65_536)):
            if getattr(self, name) > most:
                raise CharRNNError(
                    f"--{name.replace('_', '-')} must be at most {most:,}, got {getattr(self, name):,}."
                )
        if self.bidirectional and self.hidden % 2:
            raise CharRNNError(
                f"--bidirectional splits --hidden between two directions; give an even size (got {self.hidden})."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise CharRNNError(f"--dropout must be in [0, 1), got {self.dropout}.")
        if self.attention_size < 0:
            raise CharRNNError(f"--attention-size must be 0 (= hidden) or more, got {self.attention_size}.")

    @property
    def fused_training(self) -> bool:
        """Whether teacher-forced training runs the decoder as one RNN call (all but Bahdanau)."""
        return self.attention != "bahdanau"


@dataclass
class Seq2SeqTrainConfig(TrainConfig):
    """The engine's settings with seq2seq's defaults, plus teacher forcing, label smoothing and a length cap.

    A step is one batch of whole sentence pairs; validation always covers every held-out pair.
    """

    DEFAULT_EPOCHS: ClassVar[int] = 30

    batch_size: int = option(64, "Sentence pairs per step.")
    lr: float = option(2e-3, "Peak learning rate.", resumable=True)
    schedule: str = option(
        "plateau", "plateau (lower the rate when validation stalls), cosine or constant.", resumable=True
    )
    epochs: int | None = option(
        None,
        "Passes over the training pairs (default: no limit when --max-steps or --max-time is given, else 30).",
        resumable=True,
    )
    AUTO_EVAL_EVERY: ClassVar[int] = 500
    eval_every: int | None = option(
        None, "Evaluate every N steps (default: 500, or a tenth of the run when that is sooner).", resumable=True
    )
    save_every: int = option(500, "Save a resumable checkpoint every N steps.", resumable=True)
    val_fraction: float = option(0.05, "Fraction of the pairs held out for validation when no --val is given.")
    teacher_forcing: float = option(
        1.0,
        "Probability of feeding the gold previous token in training (below 1: scheduled sampling).",
        resumable=True,
    )
    label_smoothing: float = option(
        0.0, "Label smoothing of the training loss (validation: none).", resumable=True
    )
    max_length: int | None = option(None, "Skip training pairs longer than this many tokens on either side.")

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise CharRNNError(f"--teacher-forcing must be in [0, 1], got {self.teacher_forcing}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise CharRNNError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.max_length is not None:
            at_least("max_length", self.max_length, 1)


def _word_tokenizer() -> TokenizerConfig:
    return TokenizerConfig(level="word")


@dataclass
class Seq2SeqRunConfig(RunConfigBase):
    """Everything that describes a seq2seq run; saved as config.json with kind "seq2seq"."""

    DATA_FIELDS: ClassVar[tuple[str, ...]] = (  # the fields naming data files
        "pairs", "source_file", "target_file", "val_pairs", "val_source_file", "val_target_file",
    )  # fmt: skip

    source_tokenizer: TokenizerConfig = option(factory=_word_tokenizer)
    target_tokenizer: TokenizerConfig = option(factory=_word_tokenizer)
    model: Seq2SeqConfig = option(factory=Seq2SeqConfig)
    training: Seq2SeqTrainConfig = option(factory=Seq2SeqTrainConfig)
    pairs: str | None = option(None, "Training TSV of source<TAB>target lines.", cli=False, path=True)
    source_file: str | None = option(
        None, "Source side of parallel training files (with --tgt).", flag="--src", path=True
    )
    target_file: str | None = option(None, "Target side, line-aligned with --src.", flag="--tgt", path=True)
    val_pairs: str | None = option(
        None, "Validation TSV (default: hold out --val-fraction of the pairs).", flag="--val", path=True
    )
    val_source_file: str | None = option(
        None, "Validation source file (with --val-tgt).", flag="--val-src", path=True
    )
    val_target_file: str | None = option(None, "Validation target file.", flag="--val-tgt", path=True)
    encoding: str = option("utf-8", "Text encoding of the pair files.")
    errors: str = option("strict", "Undecodable bytes: strict, replace or ignore.")
    skip_malformed: bool = option(False, "Skip malformed TSV lines instead of failing.", flag="--skip-malformed")
    kind: str = "seq2seq"
    charrnn_version: str = __version__
    format_version: int = FORMAT_VERSION

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Format 1 -> 2: the training settings lose `bptt` and `eval_tokens`, which seq2seq never used.
        Runs saved before charrnn 0.3 (no `scaled_scores`) keep the unscaled Luong scores they were trained with."""
        model = data.get("model")
        if isinstance(model, dict) and "scaled_scores" not in model:
            data["model"] = {**model, "scaled_scores": False}
        training = data.get("training")
        if data.get("format_version") == 1 and isinstance(training, dict):
            data["training"] = {k: v for k, v in training.items() if k not in ("bptt", "eval_tokens")}
        return data

    @classmethod
    def describe(cls, data: dict[str, Any]) -> dict[str, Any]:
        model = data.get("model") if isinstance(data.get("model"), dict) else {}
        target = data.get("target_tokenizer") if isinstance(data.get("target_tokenizer"), dict) else {}
        return {
            "level": target.get("level"),
            "vocab_size": [model.get("source_vocab_size"), model.get("target_vocab_size")],
            "corpus": data.get("pairs") or data.get("source_file"),
        }
