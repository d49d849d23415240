"""Configuration of the two labelled kinds: the classifier (N vs 1) and the label-conditioned language model (1 vs N).

Both read labelled data (`charrnn.labelled.data`) and train on whole examples in padded,
length-bucketed batches; each keeps its labels, in model order, with their training counts in
config.json (`labels`, `label_counts`), which is where `charrnn info`, the classifier's prior and
the sampler's label prior come from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from charrnn.core.config import CELLS, RunConfigBase, TokenizerConfig, TrainConfig, at_least, choice
from charrnn.core.errors import CharRNNError
from charrnn.core.options import get_path, option, set_path
from charrnn.core.version import FORMAT_VERSION, __version__
from charrnn.labelled.data import DEFAULT_MAX_LABELS
from charrnn.lm.config import MAX_LAYERS, MAX_UNITS, ModelConfig

POOLINGS = ("last", "concat")
CLASS_WEIGHTS = ("none", "balanced")
LABEL_AS = ("state", "input", "none")


@dataclass
class ClassifierConfig:
    """Shape of the classifier: embedding -> RecurrentCore -> pooling -> dropout -> linear -> softmax over labels."""

    vocab_size: int = option(0, "Vocabulary size, from the tokenizer.", derived=True)
    n_labels: int = option(0, "Number of labels, from the training data.", derived=True)
    cell: str = option("lstm", "Recurrent cell: lstm, gru or rnn (tanh).")
    embed: int = option(64, "Embedding size.")
    hidden: int = option(128, "Hidden units per layer (and per direction with --bidirectional).")
    layers: int = option(1, "Stacked recurrent layers.")
    dropout: float = option(0.3, "Dropout on embeddings, between layers and before the output layer.")
    bidirectional: bool = option(
        True, "Read each example both ways (classifier).", flag="--bidirectional/--unidirectional"
    )
    # bench/labelled.py --parts pooling (quiet, 2026-12-01): on names, 10 epochs each, concat and last score
    # alike (accuracy 0.810 vs 0.812, macro-F1 0.475 vs 0.470); on the first movie-reviews fold, 4 epochs
    # each, concat is 1.6 points ahead (74.4% vs 72.8%). So concat, ULMFiT's choice, is the default.
    pooling: str = option(
        "concat",
        "How a text becomes one vector: concat (the final states, and the max and mean over time) or last.",
    )

    @property
    def output_size(self) -> int:
        """How many classes the softmax chooses among: the labels."""
        return self.n_labels

    def validate(self) -> None:
        choice("cell", self.cell, CELLS)
        choice("pooling", self.pooling, POOLINGS)
        _check_shape(self.embed, self.hidden, self.layers, self.dropout)


def _check_shape(embed: int, hidden: int, layers: int, dropout: float) -> None:
    for name, value in (("embed", embed), ("hidden", hidden)):
        at_least(name, value, 1)
        if value > MAX_UNITS:
            raise CharRNNError(f"--{name} must be at most {MAX_UNITS:,}, got {value:,}.")
    at_least("layers", layers, 1)
    if layers > MAX_LAYERS:
        raise CharRNNError(f"--layers must be at most {MAX_LAYERS}, got {layers}.")
    if not 0.0 <= dropout < 1.0:
        raise CharRNNError(f"--dropout must be in [0, 1), got {dropout}.")


@dataclass
class ConditionalModelConfig(ModelConfig):
    """The language model's shape plus a learned label embedding that every step sees."""

    n_labels: int = option(0, "Number of labels, from the training data.", derived=True)
    label_embed: int = option(16, "Size of the learned label embedding (--condition label).")
    # On names (bench/labelled.py --parts label-as, 2 and 3 epochs each) state beat input at both: test
    # nats/char 1.941 vs 1.962 after 3 epochs, and its Bayes classifier 0.809 vs 0.790 accuracy.
    label_as: str = option(
        "state",
        "How the model sees the label: input (its embedding joins every step's input), state (it sets the "
        "initial state) or none (ignored: the same model without labels, a baseline).",
    )

    def validate(self) -> None:
        super().validate()
        choice("label_as", self.label_as, LABEL_AS)
        at_least("label_embed", self.label_embed, 1)
        if self.label_embed > MAX_UNITS:
            raise CharRNNError(f"--label-embed must be at most {MAX_UNITS:,}, got {self.label_embed:,}.")


@dataclass
class ExamplesTrainConfig(TrainConfig):
    """The engine's settings for whole examples in padded batches (both labelled kinds)."""

    DEFAULT_EPOCHS: ClassVar[int] = 20

    batch_size: int = option(32, "Examples per step (labelled data).")
    lr: float = option(3e-3, "Peak learning rate.", resumable=True)
    warmup_steps: int = option(50, "Linear learning-rate warmup steps.", resumable=True)
    epochs: int | None = option(
        None,
        "Passes over the training examples (default: no limit when --max-steps or --max-time is given, else 20).",
        resumable=True,
    )


@dataclass
class ClassifierTrainConfig(ExamplesTrainConfig):
    """Training settings of the classifier: the engine's, plus class weights for unbalanced labels."""

    class_weights: str = option(
        "none",
        "none, or balanced: weigh each label's examples by N / (labels x its count) in the loss (and validation).",
    )

    def validate(self) -> None:
        super().validate()
        choice("class weights", self.class_weights, CLASS_WEIGHTS)


@dataclass
class LabelledRunConfig(RunConfigBase):
    """What both labelled kinds share: the labelled data, how it is read, and the labels found in it."""

    DATA_FIELDS: ClassVar[tuple[str, ...]] = ("corpus", "val_corpus")  # the fields naming data files

    corpus: str = option(
        "", "Labelled data: a folder of label files or folders, or a .tsv/.jsonl file.", cli=False, path=True
    )
    val_corpus: str | None = option(
        None, "Separate labelled validation data instead of --val-fraction.", flag="--val", path=True
    )
    glob: str = option("*.txt", "Files read from a corpus folder (recursively).")
    label_field: str = option("label", "The label's column (TSV header) or key (JSONL).")
    text_field: str = option("text", "The text's column (TSV header) or key (JSONL).")
    max_labels: int = option(DEFAULT_MAX_LABELS, "Refuse labelled data with more labels than this.")
    encoding: str = option("utf-8", "Text encoding of the corpus.")
    errors: str = option("strict", "Undecodable bytes: strict, replace or ignore.")
    cache_dir: str | None = option(
        None,
        "Token cache folder (default: the user cache folder; see `charrnn cache`).",
        resumable=True,
        path=True,
    )
    labels: list[str] = option(factory=list, help="The labels, in the model's order.", derived=True)
    label_counts: list[int] = option(factory=list, help="Training examples per label.", derived=True)

    def validate(self) -> None:
        super().validate()
        if not self.corpus:
            raise CharRNNError(
                "Give labelled DATA: a folder of label files (names/Russian.txt), a folder of label folders "
                "(reviews/pos/*.txt), or a .tsv/.jsonl file with --label-field and --text-field."
            )
        at_least("max_labels", self.max_labels, 2)

    def read_options(self) -> dict[str, Any]:
        """The reader's keyword arguments (`charrnn.labelled.data.read_labelled`) as this run reads its data."""
        return {
            "glob": self.glob,
            "label_field": self.label_field,
            "text_field": self.text_field,
            "max_labels": self.max_labels,
            "encoding": self.encoding,
            "errors": self.errors,
        }

    @classmethod
    def describe(cls, data: dict[str, Any]) -> dict[str, Any]:
        model = data.get("model") if isinstance(data.get("model"), dict) else {}
        tokenizer = data.get("tokenizer") if isinstance(data.get("tokenizer"), dict) else {}
        labels, counts = data.get("labels"), data.get("label_counts")
        described = {
            "level": tokenizer.get("level"),
            "vocab_size": model.get("vocab_size"),
            "corpus": data.get("corpus"),
        }
        if isinstance(labels, list) and isinstance(counts, list) and len(labels) == len(counts):
            described["labels"] = dict(zip(map(str, labels), counts, strict=True))
        return described


@dataclass
class ClassifierRunConfig(LabelledRunConfig):
    """Everything that describes a classifier run; saved as config.json with kind "classifier"."""

    @classmethod
    def describe(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {**super().describe(data), "loss_level": "label"}  # its loss is per text: −log P(label | text)

    tokenizer: TokenizerConfig = option(factory=TokenizerConfig)
    model: ClassifierConfig = option(factory=ClassifierConfig)
    training: ClassifierTrainConfig = option(factory=ClassifierTrainConfig)
    init_from: str | None = option(
        None,
        "Start the embedding and recurrent core from this language-model run (its tokenizer and shape are taken).",
        path=True,
    )
    kind: str = "classifier"
    charrnn_version: str = __version__
    format_version: int = FORMAT_VERSION

    SHARED_WITH_LM: ClassVar[tuple[str, ...]] = ("model.cell", "model.embed", "model.hidden", "model.layers")

    def complete(self, given: set[str]) -> None:
        """With --init-from, take the language model's tokenizer settings and core shape (refusing given ones that differ)."""
        if not self.init_from:
            return
        from charrnn.core.rundir import read_run_config
        from charrnn.lm.config import RunConfig

        lm = read_run_config(Path(self.init_from), RunConfig, "train")
        paths = [f"tokenizer.{f.name}" for f in dataclasses.fields(TokenizerConfig)] + list(self.SHARED_WITH_LM)
        for path in paths:
            theirs = get_path(lm, path)
            if path in given and get_path(self, path) != theirs:
                flag = "--" + path.split(".")[1].replace("_", "-")
                raise CharRNNError(
                    f"{flag} {get_path(self, path)} differs from the language model {Path(self.init_from).name}'s "
                    f"{theirs}; --init-from takes its tokenizer and shape, so leave {flag} out."
                )
            set_path(self, path, theirs)


@dataclass
class ConditionalRunConfig(LabelledRunConfig):
    """Everything that describes a label-conditioned language model; saved as config.json with kind "conditional"."""

    tokenizer: TokenizerConfig = option(factory=TokenizerConfig)
    model: ConditionalModelConfig = option(factory=ConditionalModelConfig)
    training: ExamplesTrainConfig = option(factory=ExamplesTrainConfig)
    kind: str = "conditional"
    charrnn_version: str = __version__
    format_version: int = FORMAT_VERSION
