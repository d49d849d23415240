"""The labelled-data reader: every layout, every one-line error, and the validation split by distinct text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charrnn.core.errors import CharRNNError
from charrnn.labelled.data import LabelledExamples, check_known_labels, hold_out, label_summary, read_labelled

NAMES = Path(__file__).resolve().parent / "data" / "names"


def test_folder_of_label_files(tmp_path: Path) -> None:
    data = read_labelled(NAMES)
    assert data.label_names() == ["English", "Italian", "Japanese", "Russian", "Scottish"]
    assert data.counts() == {"Russian": 40, "English": 30, "Italian": 20, "Japanese": 20, "Scottish": 6}
    assert data.texts[data.labels.index("Scottish")] == "Smith"  # SOURCE.md beside the files is not read
    (tmp_path / "a.txt").write_text("  one  \n\n two\r\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("three\n", encoding="utf-8")
    small = read_labelled(tmp_path)
    assert (small.texts, small.labels) == (["one", "two", "three"], ["a", "a", "b"])


def test_folder_of_label_folders(tmp_path: Path) -> None:
    for label, texts in (("pos", ["a fine film\nwith heart", "great"]), ("neg", ["dull", "  "])):
        (tmp_path / label).mkdir()
        for i, text in enumerate(texts):
            (tmp_path / label / f"{i:03d}.txt").write_text(text, encoding="utf-8")
    (tmp_path / "pos" / "notes.md").write_text("not an example", encoding="utf-8")
    data = read_labelled(tmp_path)
    assert data.texts == ["dull", "a fine film with heart", "great"]  # a file's lines joined; a blank file skipped
    assert data.labels == ["neg", "pos", "pos"]


def test_tsv_and_jsonl_with_named_fields(tmp_path: Path) -> None:
    tsv = tmp_path / "data.tsv"
    tsv.write_text("id\tsentiment\treview\n1\tpos\tgood fun\n\n2\tneg\tbad\n", encoding="utf-8")
    data = read_labelled(tsv, label_field="sentiment", text_field="review")
    assert (data.texts, data.labels) == (["good fun", "bad"], ["pos", "neg"])
    jsonl = tmp_path / "data.jsonl"
    rows = [{"y": 1, "x": "good\nfun"}, {"y": 0, "x": "bad", "extra": [1]}]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    data = read_labelled(jsonl, label_field="y", text_field="x")
    assert (data.texts, data.labels) == (["good fun", "bad"], ["1", "0"])


def error_of(path: Path, **options) -> str:
    with pytest.raises(CharRNNError) as caught:
        read_labelled(path, **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_one_line_errors(tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.mkdir()
    (one / "Russian.txt").write_text("Ivanov\n", encoding="utf-8")
    assert "one label only ('Russian')" in error_of(one)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x\n", encoding="utf-8")
    (empty / "b.txt").write_text("\n  \n", encoding="utf-8")
    assert "label 'b' would have none" in error_of(empty)

    folders = tmp_path / "folders"
    (folders / "pos").mkdir(parents=True)
    (folders / "neg").mkdir()
    (folders / "pos" / "1.txt").write_text("good", encoding="utf-8")
    assert "label 'neg' would have no example" in error_of(folders)

    tsv = tmp_path / "rows.tsv"
    tsv.write_text("label\ttext\npos\tgood\nneg\t \n", encoding="utf-8")
    assert "line 3 has no text" in error_of(tsv)
    tsv.write_text("label\ttext\n\tgood\n", encoding="utf-8")
    assert "line 2 has no label" in error_of(tsv)
    tsv.write_text("label\ttext\npos\n", encoding="utf-8")
    assert "line 2 has no text" in error_of(tsv)
    assert "no column 'sentiment'" in error_of(tsv, label_field="sentiment")
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"label": "pos", "text": "good"}\n{"text": "bad"}\n', encoding="utf-8")
    assert "line 2 has no label" in error_of(jsonl)
    jsonl.write_text('{"label": "pos", "text": "good"}\n[1, 2]\n', encoding="utf-8")
    assert "line 2 is not a JSON object" in error_of(jsonl)
    jsonl.write_text('{"label": true, "text": "good"}\n', encoding="utf-8")
    assert "must be text" in error_of(jsonl)

    case = tmp_path / "case.tsv"
    case.write_text("label\ttext\npos\ta\nPos\tb\nneg\tc\n", encoding="utf-8")
    assert "'Pos' and 'pos' differ only in case" in error_of(case)

    many = tmp_path / "many.tsv"
    many.write_text("label\ttext\n" + "".join(f"{i}\tt{i}\n" for i in range(12)), encoding="utf-8")
    assert "12 labels, more than --max-labels 10" in error_of(many, max_labels=10)
    assert len(read_labelled(many).label_names()) == 12  # the default allows 1,000

    binary = tmp_path / "bin"
    binary.mkdir()
    (binary / "a.txt").write_bytes(b"\x00\x01\x02binary")
    (binary / "b.txt").write_text("text\n", encoding="utf-8")
    assert "looks like a binary file" in error_of(binary)

    mixed = tmp_path / "mixed"
    (mixed / "pos").mkdir(parents=True)
    (mixed / "neg.txt").write_text("bad\n", encoding="utf-8")
    assert "holds both label files" in error_of(mixed)
    assert "neither a folder nor a .tsv or .jsonl" in error_of(NAMES / "Russian.txt")
    assert "no such file or folder" in error_of(tmp_path / "missing")
    assert "holds no *.txt files and no label folders" in error_of(tmp_path / "one" / ".." / "mixed" / "pos")


def test_validation_is_held_out_by_distinct_text_and_stratified() -> None:
    data = read_labelled(NAMES)
    train, val = hold_out(data, 0.2, seed=1)
    assert not set(train.texts) & set(val.texts)  # a name under two labels sits on one side only
    assert len(val.texts) == len(set(zip(val.texts, val.labels, strict=True)))  # each validation pair once
    assert len(train) + len(val) == len(data)  # the test slice has no repeated rows
    held = {label: sum(1 for v in val.labels if v == label) for label in data.label_names()}
    # 20% of each label's distinct names; the names Scottish shares with English count as Scottish (the rarer)
    assert held["Russian"] == 8 and held["Japanese"] == 4 and held["Italian"] == 4
    assert {t for t, label in zip(val.texts, val.labels, strict=True) if label == "Scottish"}
    assert hold_out(data, 0.2, seed=1) == (train, val)  # the seed fixes the split
    assert hold_out(data, 0.2, seed=2) != (train, val)


def test_a_shared_text_moves_with_all_its_labels() -> None:
    data = LabelledExamples(["a", "a", "b", "c", "d", "e"], ["x", "y", "x", "x", "y", "y"], "t")
    for seed in range(20):
        train, val = hold_out(data, 0.5, seed)
        assert ("a" in train.texts) != ("a" in val.texts)
        if "a" in val.texts:
            assert sorted(label for t, label in zip(val.texts, val.labels, strict=True) if t == "a") == ["x", "y"]


def test_labels_summary_and_known_labels() -> None:
    data = read_labelled(NAMES)
    assert label_summary(data.counts(), most=2) == "5 labels: Russian 40, English 30, and 3 more"
    check_known_labels(data, data.label_names(), "--val")
    with pytest.raises(CharRNNError, match="label 'Russian'.*its labels are: English, Italian"):
        check_known_labels(data, ["English", "Italian", "Japanese", "Scottish"], "--val")
