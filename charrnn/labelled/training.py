"""Training the labelled kinds: the engine (`charrnn.core.engine`) with padded batches of whole examples.

Both recipes read the labelled data (`charrnn.labelled.data`), hold validation out by distinct text
(or read --val), build the tokenizer from the training texts, and number the labels in sorted order;
a step is one length-bucketed batch of examples (`charrnn.core.batching`), each starting from a fresh
state. The classifier's loss is the cross-entropy of the label (optionally class-weighted), the
conditional language model's the mean cross-entropy per predicted token, `<eos>` included. The
encoded examples are read through the token cache (`charrnn.labelled.examples.cached_encode`): a
second run on the same data and tokenizer does not tokenize again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from charrnn.core import engine, memory, rundir
from charrnn.core.batching import BatchedExamplesTask, LengthBatches
from charrnn.core.errors import CharRNNError
from charrnn.core.special_tokens import PAD_ID
from charrnn.core.state import Reporter, TrainResult, TrainState
from charrnn.core.token_cache import default_cache_root
from charrnn.core.tokenizers import Tokenizer, build_tokenizer
from charrnn.labelled.classifier import Classifier
from charrnn.labelled.conditional import ConditionalLanguageModel
from charrnn.labelled.config import (
    ClassifierRunConfig,
    ClassifierTrainConfig,
    ConditionalRunConfig,
    ExamplesTrainConfig,
    LabelledRunConfig,
)
from charrnn.labelled.data import LabelledExamples, check_known_labels, hold_out, label_summary, read_labelled
from charrnn.labelled.examples import (
    EncodedExamples,
    cached_encode,
    classifier_batch,
    examples_fingerprint,
    language_model_batch,
)

EVAL_BATCH = 64


@dataclass
class LabelledData:
    """The training and validation examples of a run."""

    train: LabelledExamples
    val: LabelledExamples


def read_training_data(config: LabelledRunConfig) -> LabelledData:
    """The training examples, and the validation ones (--val, or held out by distinct text, stratified)."""
    data = read_labelled(config.corpus, **config.read_options())
    if config.val_corpus:
        val = read_labelled(config.val_corpus, **config.read_options(), min_labels=1)
        check_known_labels(val, data.label_names(), "--val")
        return LabelledData(data, val)
    train, val = hold_out(data, config.training.val_fraction, config.training.seed)
    return LabelledData(train, val)


def class_weights(counts: list[int]) -> torch.Tensor:
    """Balanced class weights w_y = N / (C n_y) (0 for a label without training examples)."""
    total, n_labels = sum(counts), len(counts)
    return torch.tensor([total / (n_labels * n) if n else 0.0 for n in counts], dtype=torch.float32)


class LabelledRecipe(engine.OneTokenizer):
    """What the two labelled recipes share: reading the data, the tokenizer, the labels and their counts,
    encoding the examples; a recipe adds its model and task (`make_task`)."""

    kind: str
    config_class: type

    def __init__(self) -> None:
        self.cache_notes: list[str] = []  # why a token cache was rebuilt, shown under the training header

    def read_config(self, run_dir: Path) -> Any:
        return rundir.read_run_config(run_dir, self.config_class, "train")

    def read_data(self, config: LabelledRunConfig, reporter: Reporter) -> LabelledData:
        return read_training_data(config)

    def build_tokenizers(self, config: LabelledRunConfig, data: LabelledData) -> Tokenizer:
        tokenizer = self.tokenizer_for(config, data)
        config.model.vocab_size = tokenizer.vocab_size  # type: ignore[attr-defined]
        config.labels = sorted(set(data.train.labels) | set(data.val.labels))
        counts = data.train.counts()
        config.label_counts = [counts.get(label, 0) for label in config.labels]
        config.model.n_labels = len(config.labels)  # type: ignore[attr-defined]
        return tokenizer

    def tokenizer_for(self, config: LabelledRunConfig, data: LabelledData) -> Tokenizer:
        """A fresh run's tokenizer: built from the training texts, one example per line."""
        return build_tokenizer("\n".join(data.train.texts) + "\n", config.tokenizer)  # type: ignore[attr-defined]

    def encode(
        self, config: LabelledRunConfig, tokenizer: Tokenizer, data: LabelledData
    ) -> tuple[EncodedExamples, EncodedExamples, dict[str, Any]]:
        """The encoded training and validation examples, and what the start of training shows about them."""
        if tokenizer.vocab_size != config.model.vocab_size:  # type: ignore[attr-defined]
            raise CharRNNError(
                f"The tokenizer has {tokenizer.vocab_size} entries but config.json says "
                f"{config.model.vocab_size}; the tokenizer file belongs to another run."  # type: ignore[attr-defined]
            )
        for part, what in ((data.train, "the training data"), (data.val, "the validation data")):
            check_known_labels(part, config.labels, what)
        tokenizer_hash = rundir.tokenizer_fingerprint(tokenizer)
        root = Path(config.cache_dir) if config.cache_dir else default_cache_root()
        note = self.cache_notes.append
        train, _ = cached_encode(data.train, tokenizer, tokenizer_hash, config.labels, root, note)
        val, _ = cached_encode(data.val, tokenizer, tokenizer_hash, config.labels, root, note)
        info = {
            "level": config.tokenizer.level,  # type: ignore[attr-defined]
            "vocab_size": tokenizer.vocab_size,
            "train_tokens": sum(train.lengths()),
            "val_tokens": sum(val.lengths()),
            "labels": dict(zip(config.labels, config.label_counts, strict=True)),
            "notes": [
                f"{label_summary(data.train.counts())} ({len(train):,} training, {len(val):,} validation examples)",
                *self.cache_notes,
            ],
        }
        return train, val, info

    def prepare(
        self,
        config: LabelledRunConfig,
        tokenizer: Tokenizer,
        data: LabelledData,
        device: torch.device,
        reporter: Reporter,
    ) -> engine.Prepared:
        train, val, info = self.encode(config, tokenizer, data)
        task = self.make_task(config, train, val, info, device)
        return engine.Prepared(task, examples_fingerprint(train, val), info)

    def make_task(
        self,
        config: Any,
        train: EncodedExamples,
        val: EncodedExamples,
        info: dict[str, Any],
        device: torch.device,
    ) -> BatchedExamplesTask:
        """The model (built once the memory to train it is checked) on `device` and its task; may add to `info`."""
        raise NotImplementedError


class ClassifierRecipe(LabelledRecipe):
    """Sets a classifier up for the training engine."""

    kind = "classifier"
    config_class = ClassifierRunConfig

    def __init__(self) -> None:
        super().__init__()
        self.pretrained: dict[str, torch.Tensor] | None = None  # --init-from: the language model's core
        self.pretrained_note = ""

    def tokenizer_for(self, config: ClassifierRunConfig, data: LabelledData) -> Tokenizer:
        """With --init-from, the language model's own tokenizer (its core is read now, loaded in `prepare`)."""
        if not config.init_from:
            return super().tokenizer_for(config, data)
        from charrnn.lm.run import LanguageModelRun

        lm = LanguageModelRun.load(config.init_from, "cpu")
        for path in ("tokenizer", *config.SHARED_WITH_LM):
            section, _, name = path.partition(".")
            mine, theirs = getattr(config, section), getattr(lm.config, section)
            if name:
                mine, theirs = getattr(mine, name), getattr(theirs, name)
            elif dataclasses.is_dataclass(mine):
                mine, theirs = dataclasses.asdict(mine), dataclasses.asdict(theirs)
            if mine != theirs:
                raise CharRNNError(
                    f"--init-from {config.init_from}: the classifier's {path} {mine} is not the language model's "
                    f"{theirs}; give the same settings (or leave them out: the language model's are taken)."
                )
        self.pretrained = {k: v.detach().clone() for k, v in lm.model.core.state_dict().items()}
        self.pretrained_note = f"embedding and recurrent core from {config.init_from}"
        return lm.tokenizer

    def make_task(
        self,
        config: ClassifierRunConfig,
        train: EncodedExamples,
        val: EncodedExamples,
        info: dict[str, Any],
        device: torch.device,
    ) -> ClassifierTask:
        cfg = config.training
        model = memory.build_to_train(lambda: Classifier(config.model))
        info["level"] = "label"  # the loss is per text, −log P(label | text): shown with its label perplexity
        if self.pretrained is not None:
            load_core(model, self.pretrained)
            info["notes"].append(self.pretrained_note)
        weights = class_weights(config.label_counts) if cfg.class_weights == "balanced" else None
        return ClassifierTask(model.to(device), train, val, weights, cfg, device)


def load_core(model: Classifier, pretrained: dict[str, torch.Tensor]) -> None:
    """Copy a language model's embedding and recurrent weights into the classifier's core (its forward direction).

    A bidirectional core's backward direction (`*_reverse`) has no counterpart and keeps its initial weights.
    """
    own = model.core.state_dict()
    for name, tensor in pretrained.items():
        if name not in own or own[name].shape != tensor.shape:
            raise CharRNNError(
                f"The language model's {name} {tuple(tensor.shape)} does not fit the classifier's core "
                f"{tuple(own[name].shape) if name in own else '(absent)'}; give the language model's shape."
            )
        own[name] = tensor
    model.core.load_state_dict(own)


class ConditionalRecipe(LabelledRecipe):
    """Sets a label-conditioned language model up for the training engine."""

    kind = "conditional"
    config_class = ConditionalRunConfig

    def make_task(
        self,
        config: ConditionalRunConfig,
        train: EncodedExamples,
        val: EncodedExamples,
        info: dict[str, Any],
        device: torch.device,
    ) -> ConditionalTask:
        info["train_tokens"] += len(train)  # every example's closing <eos> is predicted too
        info["val_tokens"] += len(val)
        model = memory.build_to_train(lambda: ConditionalLanguageModel(config.model))
        return ConditionalTask(model.to(device), train, val, config.training, device)


def train_classifier(config: ClassifierRunConfig, run_dir: str | Path, **session: Any) -> TrainResult:
    """Train a classifier on `config.corpus` into `run_dir` (`session`: as `engine.train`)."""
    return engine.train(ClassifierRecipe(), config, run_dir, **session)


def train_conditional(config: ConditionalRunConfig, run_dir: str | Path, **session: Any) -> TrainResult:
    """Train a label-conditioned language model on `config.corpus` into `run_dir` (`session`: as `engine.train`)."""
    return engine.train(ConditionalRecipe(), config, run_dir, **session)


class ClassifierTask(BatchedExamplesTask):
    """Batches of whole labelled texts; the loss is the (class-weighted) cross-entropy of their labels."""

    def __init__(
        self,
        model: Classifier,
        train: EncodedExamples,
        val: EncodedExamples,
        weights: torch.Tensor | None,
        cfg: ClassifierTrainConfig,
        device: torch.device,
    ) -> None:
        self.model, self.train, self.val, self.cfg, self.device = model, train, val, cfg, device
        self.weights = None if weights is None else weights.to(device)
        self.batches = LengthBatches(train.lengths(), cfg.batch_size, cfg.seed)
        self.batches_per_epoch = len(self.batches)
        self._setup_forward()

    def step_loss(self, state: TrainState) -> tuple[torch.Tensor, int]:
        rows, mine = self.step_rows(state)
        ids, lengths, labels = classifier_batch(self.train, rows)
        logits = self.forward(ids.to(self.device), lengths)
        loss = Classifier.loss(logits, labels.to(self.device), self.weights)
        return (loss if mine else loss * 0.0), int(lengths.sum()) if mine else 0

    @torch.inference_mode()
    def evaluate(self) -> float:
        """Mean validation cross-entropy per example, weighted as training weighs them."""
        was_training = self.model.training
        self.model.eval()
        total, weight = 0.0, 0.0
        for rows in LengthBatches(self.val.lengths(), EVAL_BATCH, shuffle=False).order(0):
            ids, lengths, labels = classifier_batch(self.val, rows)
            logits, labels = self.model(ids.to(self.device), lengths).float(), labels.to(self.device)
            total += float(F.cross_entropy(logits, labels, weight=self.weights, reduction="sum"))
            weight += float(self.weights[labels].sum()) if self.weights is not None else len(rows)
        self.model.train(was_training)
        return total / max(weight, 1e-12)


class ConditionalTask(BatchedExamplesTask):
    """Batches of whole labelled texts, each read from its label's start; the loss is per predicted token."""

    def __init__(
        self,
        model: ConditionalLanguageModel,
        train: EncodedExamples,
        val: EncodedExamples,
        cfg: ExamplesTrainConfig,
        device: torch.device,
    ) -> None:
        self.model, self.train, self.val, self.cfg, self.device = model, train, val, cfg, device
        self.batches = LengthBatches(train.lengths(), cfg.batch_size, cfg.seed)
        self.batches_per_epoch = len(self.batches)
        self._setup_forward()

    def step_loss(self, state: TrainState) -> tuple[torch.Tensor, int]:
        rows, mine = self.step_rows(state)
        inputs, targets, labels = language_model_batch(self.train, rows)
        hidden, _ = self.forward(inputs.to(self.device), None, labels.to(self.device))
        loss = self.model.loss(hidden, targets.to(self.device))
        return (loss if mine else loss * 0.0), int((targets != PAD_ID).sum()) if mine else 0

    def evaluate(self) -> float:
        """Mean validation cross-entropy per predicted token (`<eos>` included), each text under its label."""
        return mean_nats_per_token(self.model, self.val)


@torch.inference_mode()
def mean_nats_per_token(model: ConditionalLanguageModel, examples: EncodedExamples) -> float:
    """−Σ log P(x_t | <eos>, x_<t, y) / (tokens + one `<eos>` per text), over all examples."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for rows in LengthBatches(examples.lengths(), EVAL_BATCH, shuffle=False).order(0):
        inputs, targets, labels = language_model_batch(examples, rows)
        hidden, _ = model(inputs.to(device), labels=labels.to(device))
        logp = model.target_log_probs(hidden, targets.to(device))
        total -= float(logp.masked_fill(targets.to(device) == PAD_ID, 0.0).sum())
        count += int((targets != PAD_ID).sum())
    model.train(was_training)
    return total / max(count, 1)
