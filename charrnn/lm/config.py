"""Configuration of a language-model run: model shape, truncated-BPTT data layout, and the run as a whole."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from charrnn.core.config import CELLS, RunConfigBase, TokenizerConfig, TrainConfig, at_least, choice
from charrnn.core.corpus import STDIN_MAX_BYTES
from charrnn.core.errors import CharRNNError
from charrnn.core.options import option
from charrnn.core.version import FORMAT_VERSION, __version__

SOFTMAXES = ("full", "adaptive")
MAX_UNITS = 65_536  # embed/hidden beyond this are typos, not models (and would allocate without bound)
MAX_LAYERS = 64


@dataclass
class ModelConfig:
    """Shape of the embedding -> recurrent stack -> softmax language model."""

    vocab_size: int = option(0, "Vocabulary size, from the tokenizer.", derived=True)
    cell: str = option("lstm", "Recurrent cell: lstm, gru or rnn (tanh).")
    embed: int = option(128, "Embedding size.")
    hidden: int = option(384, "Hidden units per layer.")
    layers: int = option(2, "Stacked recurrent layers.")
    dropout: float = option(0.25, "Dropout on embeddings, between layers and before the softmax.", resumable=False)
    tie_weights: bool = option(False, "Share the embedding with the output projection (needs --embed = --hidden).")
    softmax: str = option("full", "full, or adaptive (fast for large vocabularies; scores stay exact).")
    adaptive_cutoffs: list[int] = option(
        factory=list,
        help="Adaptive softmax cluster boundaries (empty: about the top 6% and 30% of ids).",
        cli=False,
    )

    @property
    def output_size(self) -> int:
        """How many classes the softmax chooses among: the vocabulary."""
        return self.vocab_size

    def validate(self) -> None:
        choice("cell", self.cell, CELLS)
        choice("softmax", self.softmax, SOFTMAXES)
        for name in ("embed", "hidden"):
            at_least(name, getattr(self, name), 1)
            if getattr(self, name) > MAX_UNITS:
                raise CharRNNError(f"--{name} must be at most {MAX_UNITS:,}, got {getattr(self, name):,}.")
        at_least("layers", self.layers, 1)
        if self.layers > MAX_LAYERS:
            raise CharRNNError(f"--layers must be at most {MAX_LAYERS}, got {self.layers}.")
        if not 0.0 <= self.dropout < 1.0:
            raise CharRNNError(f"--dropout must be in [0, 1), got {self.dropout}.")
        if self.tie_weights and self.embed != self.hidden:
            raise CharRNNError(
                f"--tie-weights needs --embed equal to --hidden (got {self.embed} and {self.hidden})."
            )
        if self.tie_weights and self.softmax == "adaptive":
            raise CharRNNError("--tie-weights cannot be combined with --softmax adaptive; pick one.")


@dataclass
class LMTrainConfig(TrainConfig):
    """The engine's settings plus the language model's data layout: truncated-BPTT chunks and validation size."""

    bptt: int = option(128, "Tokens per truncated-BPTT chunk.")
    # A language model sees its small corpus many times within minutes: stronger weight decay and a
    # lower end of the cosine than the engine's defaults (10-minute Tiny Shakespeare run: 1.435 with
    # 0.01 and 0.1, 1.405 with these), and a short warmup, without which the first hundred steps at
    # the peak rate sometimes stall on a plateau for minutes (bench/README.md).
    weight_decay: float = option(0.1, "AdamW weight decay.", resumable=True)
    AUTO_WARMUP_STEPS: ClassVar[int] = 100
    warmup_steps: int | None = option(
        None, "Linear learning-rate warmup steps (default: 100, or 5% of the run when shorter).", resumable=True
    )
    min_lr_fraction: float = option(0.02, "cosine ends at max(--min-lr, this fraction of --lr).", resumable=True)
    eval_tokens: int | None = option(
        200_000, 'Validation tokens per evaluation at most ("none" in a config file: all).', resumable=True
    )

    val_split: str = option(
        "blocks",
        "Without --val: blocks (every k-th block across the corpus, k = 1/--val-fraction) or tail (the last part).",
    )

    def validate(self) -> None:
        super().validate()
        at_least("bptt", self.bptt, 1)
        choice("validation split", self.val_split, ("blocks", "tail"))
        if self.eval_tokens is not None:
            at_least("eval_tokens", self.eval_tokens, 1)


@dataclass
class RunConfig(RunConfigBase):
    """Everything that describes a language-model run; saved as config.json."""

    DATA_FIELDS: ClassVar[tuple[str, ...]] = ("corpus", "val_corpus")  # the fields naming data files

    tokenizer: TokenizerConfig = option(factory=TokenizerConfig)
    model: ModelConfig = option(factory=ModelConfig)
    training: LMTrainConfig = option(factory=LMTrainConfig)
    corpus: str = option("", "The training text: a file or a folder.", cli=False, path=True)
    more_corpora: list[str] = option(
        factory=list, help="More training files or folders after the first.", cli=False, path=True
    )
    glob: str = option("*.txt", "Files read from a corpus folder (recursively).")
    cache_dir: str | None = option(
        None,
        "Token cache folder (default: the user cache folder; see `charrnn cache`).",
        resumable=True,
        path=True,
    )
    val_corpus: str | None = option(
        None, "Separate validation text instead of --val-fraction.", flag="--val", path=True
    )
    max_bytes: int = option(
        STDIN_MAX_BYTES, "Most bytes read from standard input (-) as a corpus (default 8 GiB).", resumable=True
    )
    encoding: str = option("utf-8", "Text encoding of the corpus.")
    errors: str = option("strict", "Undecodable bytes: strict, replace or ignore.")
    kind: str = "lm"
    charrnn_version: str = __version__
    format_version: int = FORMAT_VERSION

    def validate(self) -> None:
        super().validate()
        at_least("max_bytes", self.max_bytes, 1)

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        """A run without `training.val_split` was made when validation was the corpus's tail."""
        training = data.get("training")
        if isinstance(training, dict) and "val_split" not in training:
            data["training"] = {**training, "val_split": "tail"}
        return data

    @classmethod
    def describe(cls, data: dict[str, Any]) -> dict[str, Any]:
        model = data.get("model") if isinstance(data.get("model"), dict) else {}
        tokenizer = data.get("tokenizer") if isinstance(data.get("tokenizer"), dict) else {}
        return {
            "level": tokenizer.get("level"),
            "vocab_size": model.get("vocab_size"),
            "corpus": data.get("corpus"),
        }
