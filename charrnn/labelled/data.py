"""Labelled text: one reader for every layout, and the validation split by distinct text.

Layouts (one reader serves `train`, `eval` and the benchmark):

    names/                  a folder of files: the file name (without .txt) is the label,
      Russian.txt           each non-blank line one example
      Scottish.txt
    reviews/                a folder of folders: the folder name is the label,
      pos/001.txt           each file one example (its lines joined by spaces)
      neg/002.txt
    data.tsv                a header row naming the fields, then one example per row;
    data.jsonl              one JSON object per line; both read the label from --label-field
                            and the text from --text-field

Files in folders are those matching --glob (default *.txt), so a SOURCE.md or README beside the
data is not read. An example is one sequence: spaces around it are dropped and line breaks inside
it become spaces.

Validation is held out *by distinct text*, stratified by label. A text that occurs under several
labels (a surname that is both English and Scottish) goes wholly to training or wholly to
validation, so no text is ever seen in training and then tested on. Each distinct text belongs to
the stratum of its rarest label; each stratum of n ≥ 2 distinct texts gives max(1, round(f·n)) of
them (at most n − 1) to validation. Validation holds each distinct (text, label) pair once; training
keeps every row, repeats included (they are how often a text carries a label).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from charrnn.core.errors import CharRNNError
from charrnn.core.text import check_encoding, read_text

DEFAULT_MAX_LABELS = 1000
SKIPPED_FOLDERS = (".charrnn-cache",)


@dataclass
class LabelledExamples:
    """Examples and their labels, row by row, and where they came from."""

    texts: list[str]
    labels: list[str]
    origin: str  # the file or folder they were read from, for messages

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        """Examples per label, the most frequent first (ties by name)."""
        counted = Counter(self.labels)
        return dict(sorted(counted.items(), key=lambda item: (-item[1], item[0])))

    def label_names(self) -> list[str]:
        """The labels, sorted by name: label i of a model is the i-th of these."""
        return sorted(set(self.labels))


def read_labelled(
    path: str | Path,
    *,
    glob: str = "*.txt",
    label_field: str = "label",
    text_field: str = "text",
    max_labels: int = DEFAULT_MAX_LABELS,
    encoding: str = "utf-8",
    errors: str = "strict",
    min_labels: int = 2,
) -> LabelledExamples:
    """Read labelled examples from a folder of label files, a folder of label folders, a TSV or a JSONL file.

    The labels are checked: at least `min_labels` (two to train on, one to evaluate), none without
    examples, none that differ from another only in case, at most `max_labels`.
    """
    path = Path(path)
    check_encoding(encoding, errors)
    if not path.exists():
        raise CharRNNError(f"{path}: no such file or folder.")
    if path.is_dir():
        data = _read_folder(path, glob, encoding, errors)
    elif path.suffix.lower() == ".tsv":
        data = _read_tsv(path, label_field, text_field, encoding, errors)
    elif path.suffix.lower() == ".jsonl":
        data = _read_jsonl(path, label_field, text_field, encoding, errors)
    else:
        raise CharRNNError(
            f"{path} is neither a folder nor a .tsv or .jsonl file; give a folder of label files "
            "(names/Russian.txt), a folder of label folders (reviews/pos/*.txt), or a TSV/JSONL file."
        )
    check_labels(data, max_labels, min_labels)
    return data


def check_labels(data: LabelledExamples, max_labels: int = DEFAULT_MAX_LABELS, min_labels: int = 2) -> None:
    """One-line errors for labels a model cannot be trained on: one only, too many, or two that differ in case."""
    names = data.label_names()
    if len(names) > max_labels:
        raise CharRNNError(
            f"{data.origin} has {len(names):,} labels, more than --max-labels {max_labels:,}; check that "
            "--label-field names the label (raise --max-labels if so many are meant)."
        )
    if not names:
        raise CharRNNError(f"{data.origin} holds no labelled example.")
    if len(names) < min_labels:
        only = f" ({names[0]!r})" if names else ""
        raise CharRNNError(f"{data.origin} has one label only{only}; labelled data needs two or more labels.")
    folded: dict[str, str] = {}
    for name in names:
        other = folded.setdefault(name.casefold(), name)
        if other != name:
            raise CharRNNError(
                f"{data.origin}: the labels {other!r} and {name!r} differ only in case; rename one so they "
                "are one label or clearly two."
            )


def _one_line(text: str) -> str:
    """An example as one sequence: its lines joined by single spaces, surrounding spaces dropped."""
    return " ".join(line.strip() for line in text.split("\n") if line.strip())


def _label_files(folder: Path, glob: str) -> list[Path]:
    return sorted(p for p in folder.glob(glob) if p.is_file())


def _label_folders(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in SKIPPED_FOLDERS
    )


def _read_folder(folder: Path, glob: str, encoding: str, errors: str) -> LabelledExamples:
    files, folders = _label_files(folder, glob), _label_folders(folder)
    if files and folders:
        raise CharRNNError(
            f"{folder} holds both label files ({files[0].name}) and label folders ({folders[0].name}/); "
            "use one layout: files whose names are labels, or folders whose names are labels."
        )
    texts, labels = [], []
    if files:  # names/Russian.txt: one example per line
        for file in files:
            lines = [line.strip() for line in read_text(file, encoding, errors).split("\n")]
            examples = [line for line in lines if line]
            if not examples:
                raise CharRNNError(
                    f"{file} holds no example, so label {file.stem!r} would have none; add lines or remove the file."
                )
            texts += examples
            labels += [file.stem] * len(examples)
    elif folders:  # reviews/pos/001.txt: one example per file
        for label_folder in folders:
            found = sorted(p for p in label_folder.rglob(glob) if p.is_file())
            examples = [_one_line(read_text(file, encoding, errors)) for file in found]
            examples = [text for text in examples if text]
            if not examples:
                raise CharRNNError(
                    f"{label_folder} holds no non-empty {glob} file, so label {label_folder.name!r} would have "
                    "no example; add some or remove the folder."
                )
            texts += examples
            labels += [label_folder.name] * len(examples)
    else:
        raise CharRNNError(
            f"{folder} holds no {glob} files and no label folders; give a folder of label files "
            "(names/Russian.txt) or of label folders (reviews/pos/*.txt), or pass --glob."
        )
    return LabelledExamples(texts, labels, str(folder))


def _field_value(value: object, where: str, field: str, flag: str) -> str:
    """A label or text value of a row as one line of text; a one-line error when it is missing or not text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CharRNNError(f"{where} has no {field} (field {flag}); every row needs a label and a text.")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise CharRNNError(f"{where}: the {field} must be text (or a whole number), got {json.dumps(value)[:40]}.")
    return _one_line(str(value))


def _read_tsv(path: Path, label_field: str, text_field: str, encoding: str, errors: str) -> LabelledExamples:
    lines = read_text(path, encoding, errors).split("\n")
    header = [name.strip() for name in lines[0].split("\t")] if lines else []
    for field, flag in ((label_field, "--label-field"), (text_field, "--text-field")):
        if field not in header:
            raise CharRNNError(
                f"{path}: the header row has no column {field!r} (it has: {', '.join(map(repr, header))[:200]}); "
                f"name the column with {flag}."
            )
    label_at, text_at = header.index(label_field), header.index(text_field)
    texts, labels = [], []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cells = line.split("\t")
        where = f"{path} line {number}"
        label = cells[label_at] if label_at < len(cells) else None
        text = cells[text_at] if text_at < len(cells) else None
        labels.append(_field_value(label, where, "label", f"{label_field!r}"))
        texts.append(_field_value(text, where, "text", f"{text_field!r}"))
    return LabelledExamples(texts, labels, str(path))


def _read_jsonl(path: Path, label_field: str, text_field: str, encoding: str, errors: str) -> LabelledExamples:
    texts, labels = [], []
    for number, line in enumerate(read_text(path, encoding, errors).split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise CharRNNError(f"{where} is not valid JSON ({exc}); give one JSON object per line.") from None
        if not isinstance(row, dict):
            raise CharRNNError(f"{where} is not a JSON object; give one object per line with a label and a text.")
        labels.append(_field_value(row.get(label_field), where, "label", f"{label_field!r}"))
        texts.append(_field_value(row.get(text_field), where, "text", f"{text_field!r}"))
    return LabelledExamples(texts, labels, str(path))


def label_summary(counts: dict[str, int], most: int = 30) -> str:
    """The labels with their counts on one line, the most frequent first: "3 labels: Russian 8,474, English 3,332, Korean 88"."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = ", ".join(f"{label} {count:,}" for label, count in ordered[:most])
    more = f", and {len(counts) - most} more" if len(counts) > most else ""
    return f"{len(counts)} labels: {shown}{more}"


def hold_out(data: LabelledExamples, fraction: float, seed: int) -> tuple[LabelledExamples, LabelledExamples]:
    """(training, validation): `fraction` of the distinct texts of each label held out (module docstring)."""
    counts = Counter(data.labels)
    text_labels: dict[str, set[str]] = {}
    for text, label in zip(data.texts, data.labels, strict=True):
        text_labels.setdefault(text, set()).add(label)
    strata: dict[str, list[str]] = {}
    for text, labels in text_labels.items():  # in order of first appearance
        rarest = min(labels, key=lambda label: (counts[label], label))
        strata.setdefault(rarest, []).append(text)
    generator = random.Random(seed)
    held: set[str] = set()
    for label in sorted(strata):
        texts = strata[label]
        generator.shuffle(texts)
        if len(texts) >= 2:
            held.update(texts[: min(max(1, round(fraction * len(texts))), len(texts) - 1)])
    train = [(t, label) for t, label in zip(data.texts, data.labels, strict=True) if t not in held]
    val = list(dict.fromkeys((t, label) for t, label in zip(data.texts, data.labels, strict=True) if t in held))
    if not train or not val:
        raise CharRNNError(
            f"{data.origin} has too few distinct texts ({len(text_labels)}) to hold some out for validation; "
            "add examples or give --val."
        )

    def part(rows: list[tuple[str, str]], origin: str) -> LabelledExamples:
        return LabelledExamples([t for t, _ in rows], [label for _, label in rows], origin)

    return part(train, data.origin), part(val, f"{data.origin} (held out)")


def check_known_labels(data: LabelledExamples, known: list[str], what: str) -> None:
    """Refuse examples whose label the model does not have, listing the labels it has."""
    unknown = sorted(set(data.labels) - set(known))
    if unknown:
        raise CharRNNError(
            f"{what} {data.origin} has the label {unknown[0]!r}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f", which the model does not have; its labels are: {', '.join(known)}."
        )
