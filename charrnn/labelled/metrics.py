"""What a classifier says about a text, and how well it does on labelled data: accuracy, macro-F1, the confusion matrix.

With C[i][j] the number of examples of true label i predicted as j (the confusion matrix):

    accuracy      Σ_i C[i][i] / Σ_ij C[i][j]
    precision_j   C[j][j] / Σ_i C[i][j]          (0 when label j is never predicted)
    recall_i      C[i][i] / Σ_j C[i][j]          (support_i = Σ_j C[i][j])
    F1_i          2 P_i R_i / (P_i + R_i)        (0 when both are 0)
    macro-F1      the mean of F1_i over the labels that occur in the data or are predicted, so every such
                  label counts as much as any other, however rare (accuracy is dominated by the frequent ones)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Classification:
    """A text and P(label | text) for every label, the most probable first."""

    text: str
    probabilities: dict[str, float]

    @property
    def label(self) -> str:
        """The most probable label."""
        return next(iter(self.probabilities))

    def top(self, k: int | None = None) -> list[tuple[str, float]]:
        """The `k` most probable labels with their probabilities (all of them when k is None)."""
        return list(self.probabilities.items())[:k]

    def to_dict(self, k: int | None = None) -> dict:
        return {"text": self.text, "labels": [{"label": x, "probability": p} for x, p in self.top(k)]}


def ranked(text: str, labels: list[str], probabilities: list[float]) -> Classification:
    """A `Classification` with the labels ordered by probability (ties by label order)."""
    order = sorted(range(len(labels)), key=lambda i: -probabilities[i])
    return Classification(text, {labels[i]: probabilities[i] for i in order})


@dataclass
class PrefixClassification:
    """How a decision forms as a text is read: P(label | the first t tokens) after every token t.

    Row t of `probabilities` holds P(label | tokens[0..t]) in the model's label order. A conditional
    model's last token is the closing `<eos>` (`ends_with_eos`): its rows before read the prefixes alone,
    its last row the whole text, ended, which is what `classify` gives. A classifier's last row is its
    `classify` of the whole text.
    """

    text: str
    tokens: list[str]
    labels: list[str]  # the model's order
    probabilities: list[list[float]]  # (tokens, labels)
    prior: list[float]  # P(label) before any token: the labels' shares of the training examples
    ends_with_eos: bool = False

    def final(self) -> Classification:
        """P(label | the whole text): the last row, ranked."""
        return ranked(self.text, self.labels, self.probabilities[-1])

    def changes(self, label: str) -> list[float]:
        """How much each token moved P(label): row t minus row t − 1 (the first token: minus the prior)."""
        j = self.labels.index(label)
        before = [self.prior[j], *(row[j] for row in self.probabilities[:-1])]
        return [row[j] - p for row, p in zip(self.probabilities, before, strict=True)]

    def moved_most(self, label: str, n: int) -> list[int]:
        """The positions of the `n` tokens that moved P(label) most either way, the largest first."""
        changes = self.changes(label)
        return sorted(range(len(changes)), key=lambda t: -abs(changes[t]))[:n]

    def to_dict(self, k: int | None = None, highlighted: int = 3) -> dict:
        """The top-k labels of the whole text, their P(label | text so far) after each token, the predicted
        label's change at each token and the `highlighted` tokens that moved it most."""
        final = self.final()
        top = final.top(k)
        columns = [self.labels.index(label) for label, _ in top]
        return {
            "text": self.text,
            "tokens": self.tokens,
            "label": final.label,
            "labels": [{"label": x, "probability": p} for x, p in top],
            "prefix_probabilities": [[row[j] for j in columns] for row in self.probabilities],
            "change": self.changes(final.label),
            "highlighted": self.moved_most(final.label, highlighted),
            "ends_with_eos": self.ends_with_eos,
        }


@dataclass
class LabelScores:
    """One label's row of the report."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class ClassificationReport:
    """Accuracy, macro-F1, per-label precision/recall/F1/support and the confusion matrix of a labelled set."""

    labels: list[str]
    confusion: list[list[int]]  # confusion[true][predicted]
    accuracy: float
    macro_f1: float
    per_label: list[LabelScores]
    examples: int
    extra: dict[str, float] | None = None  # what else the model measures (a conditional model's nats/token)

    def to_dict(self) -> dict:
        return asdict(self)


def confusion_matrix(true: list[int], predicted: list[int], n_labels: int) -> list[list[int]]:
    """C[i][j]: how many examples of label i were predicted as label j."""
    matrix = [[0] * n_labels for _ in range(n_labels)]
    for t, p in zip(true, predicted, strict=True):
        matrix[t][p] += 1
    return matrix


def report(true: list[int], predicted: list[int], labels: list[str]) -> ClassificationReport:
    """The figures of the module docstring for true and predicted label indices into `labels`."""
    matrix = confusion_matrix(true, predicted, len(labels))
    n = len(true)
    rows = []
    for i, label in enumerate(labels):
        hit = matrix[i][i]
        support = sum(matrix[i])
        predicted_as = sum(matrix[r][i] for r in range(len(labels)))
        precision = hit / predicted_as if predicted_as else 0.0
        recall = hit / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append((LabelScores(label, precision, recall, f1, support), support or predicted_as))
    counted = [scores.f1 for scores, seen in rows if seen]
    return ClassificationReport(
        labels=list(labels),
        confusion=matrix,
        accuracy=sum(matrix[i][i] for i in range(len(labels))) / n if n else 0.0,
        macro_f1=sum(counted) / len(counted) if counted else 0.0,
        per_label=[scores for scores, _ in rows],
        examples=n,
    )
