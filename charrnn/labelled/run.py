"""Trained labelled-text runs, loaded from their directories: `ClassifierRun` and `ConditionalRun` (`charrnn.load`).

Both classify: a classifier reads P(label | text) from its softmax, a conditional language model by Bayes'
rule from P(text | label) and the training prior (`charrnn.labelled.conditional`). Both evaluate on
labelled data (`charrnn.labelled.metrics`). A conditional model also samples texts of a label and scores
log P(text | label).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from charrnn.core.batching import LengthBatches
from charrnn.core.errors import CharRNNError
from charrnn.core.loaded_run import LoadedRun, read_one_tokenizer
from charrnn.core.runtime import scoring_autocast
from charrnn.core.sampling import SampleSettings
from charrnn.core.scoring import SentenceScore, encode_sentence, sentence_score
from charrnn.core.special_tokens import EOS_ID
from charrnn.core.tokenizers import Tokenizer
from charrnn.labelled.classifier import Classifier
from charrnn.labelled.conditional import (
    ConditionalLanguageModel,
    WithLabels,
    label_posteriors,
    log_prior,
    score_with_labels,
)
from charrnn.labelled.config import ClassifierRunConfig, ConditionalRunConfig, LabelledRunConfig
from charrnn.labelled.data import LabelledExamples, check_known_labels, read_labelled
from charrnn.labelled.examples import EncodedExamples, classifier_batch, encode_examples
from charrnn.labelled.metrics import Classification, ClassificationReport, PrefixClassification, ranked, report
from charrnn.labelled.training import EVAL_BATCH, mean_nats_per_token
from charrnn.lm.sampling import encode_prime, generate

PathLike = str | Path


class LabelledRun(LoadedRun):
    """What both labelled runs share: the labels, classifying texts, evaluating on labelled data."""

    config: LabelledRunConfig

    def __init__(self, run_dir: Path, config: Any, tokenizer: Tokenizer, model: torch.nn.Module, note: str | None):
        self.run_dir, self.config, self.tokenizer, self.model = run_dir, config, tokenizer, model
        self.note = note  # set when the weights are not the best checkpoint (see `LoadedRun.load`)

    @classmethod
    def read_tokenizers(cls, run_dir: Path, config: Any) -> tuple[Tokenizer]:
        if len(config.labels) != config.model.n_labels or len(config.label_counts) != len(config.labels):
            raise CharRNNError(
                f"{run_dir}/config.json lists {len(config.labels)} labels for a model of "
                f"{config.model.n_labels}; the file is damaged."
            )
        return (read_one_tokenizer(run_dir, config),)

    @property
    def labels(self) -> list[str]:
        """The labels, in the model's order."""
        return list(self.config.labels)

    def label_counts(self) -> dict[str, int]:
        """Training examples per label."""
        return dict(zip(self.config.labels, self.config.label_counts, strict=True))

    def prior(self) -> list[float]:
        """P(label) = n_label / N: the labels' shares of the training examples, in the model's order."""
        total = sum(self.config.label_counts)
        return [n / total for n in self.config.label_counts]

    def label_index(self, label: str) -> int:
        """The index of `label`, with a one-line error listing the labels for an unknown one."""
        if label not in self.config.labels:
            raise CharRNNError(f"Unknown label {label!r}; this run's labels are: {', '.join(self.config.labels)}.")
        return self.config.labels.index(label)

    def encode_texts(self, texts: list[str]) -> list[list[int]]:
        """The ids of each text (one line each), refusing an empty one."""
        encoded = []
        for text in texts:
            line = " ".join(text.split("\n")).strip()
            if not line:
                raise CharRNNError("Cannot classify an empty text; give some text.")
            encoded.append(self.tokenizer.encode_line(line))
        return encoded

    def posteriors(self, texts: list[str]) -> torch.Tensor:
        """P(label | text), (texts, labels)."""
        raise NotImplementedError

    def classify_prefixes(self, text: str) -> PrefixClassification:
        """P(label | the text so far) after every token of `text` (one line): how the decision forms."""
        raise NotImplementedError

    def classify(self, texts: str | list[str], *, precision: str = "fp32") -> list[Classification]:
        """P(label | text) of every label for each text, the most probable first."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        device = next(self.model.parameters()).device
        with scoring_autocast(device, precision, self.config.model.cell):
            probabilities = self.posteriors(texts).tolist()
        return [ranked(text, self.labels, row) for text, row in zip(texts, probabilities, strict=True)]

    def read_data(self, path: PathLike, **options: Any) -> LabelledExamples:
        """Labelled data read as this run reads its own (`options`: label_field, text_field, glob, ... to differ)."""
        data = read_labelled(path, **{**self.config.read_options(), "min_labels": 1, **options})
        check_known_labels(data, self.labels, "The data")
        return data

    def evaluate(self, data: LabelledExamples | PathLike, **options: Any) -> ClassificationReport:
        """Accuracy, macro-F1, per-label figures and the confusion matrix on labelled data (a path is read first)."""
        if not isinstance(data, LabelledExamples):
            data = self.read_data(data, **options)
        check_known_labels(data, self.labels, "The data")
        predicted = self.posteriors(data.texts).argmax(dim=1).tolist()
        index = {label: i for i, label in enumerate(self.labels)}
        return report([index[y] for y in data.labels], predicted, self.labels)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "labels": self.label_counts()}


class ClassifierRun(LabelledRun):
    """A classifier loaded from a run directory (`charrnn.load`)."""

    kind = "classifier"
    config_class = ClassifierRunConfig

    @classmethod
    def build_model(cls, config: ClassifierRunConfig) -> Classifier:
        return Classifier(config.model)

    def posteriors(self, texts: list[str]) -> torch.Tensor:
        """P(label | text) = softmax of the classifier's logits, texts batched by length."""
        return self.softmax(self.encode_texts(texts))

    @torch.inference_mode()
    def softmax(self, encoded: list[list[int]]) -> torch.Tensor:
        """P(label | ids) of each non-empty id list (lists, labels), batched by length, each pooled over its length."""
        examples = EncodedExamples(encoded, [0] * len(encoded))
        device = next(self.model.parameters()).device
        out = torch.zeros(len(encoded), len(self.labels))
        for rows in LengthBatches(examples.lengths(), EVAL_BATCH, shuffle=False).order(0):
            ids, lengths, _ = classifier_batch(examples, rows)
            out[rows] = torch.softmax(self.model(ids.to(device), lengths).float(), dim=-1).cpu()
        return out

    @torch.inference_mode()
    def prefix_softmax(self, ids: list[int]) -> torch.Tensor:
        """P(label | x_1..x_t) for every t of one text, (tokens, labels), in one pass of a one-way core."""
        device = next(self.model.parameters()).device
        logits = self.model.prefix_logits(torch.tensor(ids, dtype=torch.long, device=device))
        return torch.softmax(logits.float(), dim=-1).cpu()

    def classify_prefixes(self, text: str) -> PrefixClassification:
        """P(label | x_1..x_t) for t = 1..T: the classifier run on every prefix of the text, in padded batches.

        Each prefix is read from a fresh state and pooled over its own length, so the last row is what
        `classify` gives for the whole text: one pass with running pooling for a one-way core
        (`Classifier.prefix_logits`); a bidirectional model rereads each prefix (T passes, batched).
        """
        [ids] = self.encode_texts([text])
        if self.model.core.directions == 1:
            rows = self.prefix_softmax(ids)
        else:
            rows = self.softmax([ids[:t] for t in range(1, len(ids) + 1)])
        return PrefixClassification(text, self.tokenizer.tokens(ids), self.labels, rows.tolist(), self.prior())


class ConditionalRun(LabelledRun):
    """A label-conditioned language model loaded from a run directory (`charrnn.load`)."""

    kind = "conditional"
    config_class = ConditionalRunConfig

    @classmethod
    def build_model(cls, config: ConditionalRunConfig) -> ConditionalLanguageModel:
        return ConditionalLanguageModel(config.model)

    def refuse_without_labels(self) -> None:
        """A one-line error when the model ignores labels (--label-as none): it cannot classify."""
        if self.config.model.label_as == "none":
            raise CharRNNError(
                f"{self.run_dir} was trained with --label-as none: it ignores labels, so it cannot classify."
            )

    def posteriors(self, texts: list[str]) -> torch.Tensor:
        """P(label | text) ∝ P(text | label) P(label), the prior from the training counts (Bayes' rule)."""
        self.refuse_without_labels()
        sequences = [ids + [EOS_ID] for ids in self.encode_texts(texts)]
        return label_posteriors(self.model, sequences, self.config.label_counts)[0].float()

    def classify_prefixes(self, text: str) -> PrefixClassification:
        """P(label | x_1..x_t) ∝ P(x_1..x_t | label) P(label) after every token, by Bayes' rule.

        The text is scored once under every label; log P(x_1..x_t | label) is the running sum of its
        per-token log-probabilities. The rows of the text's tokens read the prefixes without `<eos>`; the
        last row, after the closing `<eos>`, is P(label | the whole text), what `classify` gives.
        """
        self.refuse_without_labels()
        [ids] = self.encode_texts([text])
        sequence = ids + [EOS_ID]
        n_labels = len(self.labels)
        per_token = score_with_labels(self.model, [sequence] * n_labels, list(range(n_labels)))
        cumulative = torch.tensor(per_token, dtype=torch.float64).cumsum(dim=1).T  # (tokens + 1, labels)
        joint = cumulative + torch.tensor(log_prior(self.config.label_counts), dtype=torch.float64)
        rows = torch.softmax(joint, dim=1).tolist()
        tokens = self.tokenizer.tokens(sequence)
        return PrefixClassification(text, tokens, self.labels, rows, self.prior(), ends_with_eos=True)

    def score(
        self,
        sentences: str | list[str],
        label: str,
        *,
        oov: str = "penalty",
        oov_logprob: float | None = None,
        precision: str = "fp32",
    ) -> list[SentenceScore]:
        """log P(text | label) of each text, a closing `<eos>` included, with per-token detail (`oov` as `LanguageModelRun.score`)."""
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        index = self.label_index(label)
        encoded = [encode_sentence(self.tokenizer, text) for text in texts]
        device = next(self.model.parameters()).device
        with scoring_autocast(device, precision, self.config.model.cell):
            per_token = score_with_labels(self.model, encoded, [index] * len(encoded))
        return [
            sentence_score(self.tokenizer, text, ids, logps, oov, oov_logprob)
            for text, ids, logps in zip(texts, encoded, per_token, strict=True)
        ]

    def nats_per_token(self, data: LabelledExamples | PathLike, **options: Any) -> float:
        """−Σ log P(text | label) / tokens (each text's `<eos>` counted) over labelled data: validation's measure."""
        if not isinstance(data, LabelledExamples):
            data = self.read_data(data, **options)
        check_known_labels(data, self.labels, "The data")
        return mean_nats_per_token(self.model, encode_examples(data, self.tokenizer, self.labels))

    def evaluate(self, data: LabelledExamples | PathLike, **options: Any) -> ClassificationReport:
        """The Bayes classifier's figures (`LabelledRun.evaluate`) and the texts' nats/token under their labels."""
        if not isinstance(data, LabelledExamples):
            data = self.read_data(data, **options)
        result = super().evaluate(data) if self.config.model.label_as != "none" else report([], [], self.labels)
        result.extra = {"nats_per_token": self.nats_per_token(data)}
        return result

    def draw_labels(self, num: int, seed: int | None = None) -> list[str]:
        """`num` labels drawn from the training prior P(y) = n_y / N."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        prior = torch.tensor(self.config.label_counts, dtype=torch.float64)
        drawn = torch.multinomial(prior, num, replacement=True, generator=generator).tolist()
        return [self.labels[i] for i in drawn]

    def sample_with_labels(
        self,
        label: str | None = None,
        *,
        num: int = 1,
        prime: str = "",
        length: int = 200,
        temperature: float = 1.0,
        greedy: bool = False,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> list[tuple[str, str]]:
        """`num` (label, text) pairs: texts of `label` (default: each label drawn from the training prior).

        Each text starts with `prime` and ends at the model's first `<eos>` (or after `length` tokens).
        """
        settings = SampleSettings(
            length=length, temperature=temperature, greedy=greedy, top_k=top_k, top_p=top_p, until_eos=True,
            num=num, seed=seed,
        )  # fmt: skip
        settings.validate()
        labels = [label] * num if label is not None else self.draw_labels(num, seed)
        rows = torch.tensor([self.label_index(x) for x in labels], device=next(self.model.parameters()).device)
        encode_prime(self.tokenizer, prime)  # refuse a bad prime before generating
        texts = []
        for ids in generate(WithLabels(self.model, rows), self.tokenizer, prime, settings):
            decode = self.tokenizer.stream_decoder()
            for token in self.tokenizer.encode(prime):  # so that spacing continues the prime
                decode(token)
            texts.append(prime + "".join(decode(t) for t in ids if t != EOS_ID))
        return list(zip(labels, texts, strict=True))

    def sample(self, label: str | None = None, *, num: int = 1, **options: Any) -> str | list[str]:
        """Texts of `label` (default: drawn from the prior); a list when num > 1. `options` as `sample_with_labels`."""
        texts = [text for _, text in self.sample_with_labels(label, num=num, **options)]
        return texts[0] if num == 1 else texts
