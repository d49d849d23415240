"""Labelled examples through the token cache: the cached ids, offsets and labels equal the in-memory encoding,
a warm cache spares the tokenizer, a damaged one is detected and rebuilt, and `charrnn cache list` shows it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import charrnn
from charrnn.core import rundir, token_cache
from charrnn.core.config import TokenizerConfig
from charrnn.core.token_cache import data_fingerprint
from charrnn.core.tokenizers import VocabTokenizer, build_tokenizer
from charrnn.labelled import examples as examples_module
from charrnn.labelled.data import LabelledExamples, hold_out, read_labelled
from charrnn.labelled.examples import (
    EncodedExamples,
    PackedIds,
    cached_encode,
    encode_examples,
    examples_fingerprint,
)
from tests.support import run_cli

torch.set_num_threads(1)

NAMES = Path(__file__).resolve().parent / "data" / "names"
TINY = {"embed": 8, "hidden": 12, "batch_size": 8, "threads": 1, "device": "cpu", "eval_every": 5, "save_every": 5}


@pytest.fixture
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user cache folder of this test's own ($CHARRNN_CACHE)."""
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache"


@pytest.fixture
def encoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every line the char and word tokenizers encode, from now on."""
    calls: list[str] = []
    real = VocabTokenizer.encode_line

    def counting(self: VocabTokenizer, line: str) -> list[int]:
        calls.append(line)
        return real(self, line)

    monkeypatch.setattr(VocabTokenizer, "encode_line", counting)
    return calls


def names_parts(level: str = "char") -> tuple[LabelledExamples, LabelledExamples, VocabTokenizer, list[str]]:
    """The names held out as training does, a tokenizer built from the training texts, and the labels."""
    data = read_labelled(NAMES)
    train, val = hold_out(data, 0.1, seed=0)
    tokenizer = build_tokenizer("\n".join(train.texts) + "\n", TokenizerConfig(level=level))
    return train, val, tokenizer, data.label_names()  # type: ignore[return-value]


def old_fingerprint(*parts: EncodedExamples) -> str:
    """`examples_fingerprint` as it was written before the examples were packed: one example at a time."""
    pieces = []
    for part in parts:
        for ids, label in zip(part.ids, part.labels, strict=True):
            pieces.append(np.asarray([*ids, -1, label, -2], dtype=np.int64))
        pieces.append(np.asarray([-3], dtype=np.int64))
    return data_fingerprint(pieces)


@pytest.mark.parametrize("level", ["char", "word"])
def test_cached_examples_equal_the_in_memory_encoding(tmp_path: Path, level: str) -> None:
    train, val, tokenizer, labels = names_parts(level)
    tokenizer_hash = rundir.tokenizer_fingerprint(tokenizer)
    for part in (train, val):
        reference = encode_examples(part, tokenizer, labels)
        for reused in (False, True):
            cached, found = cached_encode(part, tokenizer, tokenizer_hash, labels, tmp_path / "cache")
            assert found.reused is reused and found.folder.name.startswith("examples-")
            assert list(cached.ids) == reference.ids and cached.labels == reference.labels
            assert cached.lengths() == reference.lengths() and len(cached) == len(reference)
            np.testing.assert_array_equal(found.offsets, np.cumsum([0, *reference.lengths()]))
            np.testing.assert_array_equal(np.asarray(found.ids()), [i for ids in reference.ids for i in ids])
            np.testing.assert_array_equal(found.labels, reference.labels)
            assert found.header["examples"] == len(part) and found.header["labels"] == labels
    in_memory = [encode_examples(part, tokenizer, labels) for part in (train, val)]
    cached = [
        cached_encode(part, tokenizer, tokenizer_hash, labels, tmp_path / "cache")[0] for part in (train, val)
    ]
    assert examples_fingerprint(*cached) == examples_fingerprint(*in_memory) == old_fingerprint(*in_memory)
    folders = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(folders) == 2  # one per part, found again rather than written twice
    other = cached_encode(train, tokenizer, "another tokenizer", labels, tmp_path / "cache")[1]
    assert not other.reused and other.folder.name not in folders


def test_the_fingerprint_of_packed_examples_is_the_one_resumed_runs_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts = [
        EncodedExamples([[5, 6, 7], [], [8], [9, 9]], [1, 0, 2, 1]),
        EncodedExamples([], []),
        EncodedExamples([[4]], [3]),
    ]
    expected = old_fingerprint(*parts)
    assert examples_fingerprint(*parts) == expected
    monkeypatch.setattr(examples_module, "FINGERPRINT_EXAMPLES", 3)  # several pieces per part
    assert examples_fingerprint(*parts) == expected
    packed = [EncodedExamples(PackedIds.of(part.ids), part.labels) for part in parts]
    assert examples_fingerprint(*packed) == expected
    assert list(packed[0].ids) == parts[0].ids and packed[0].lengths() == [3, 0, 1, 2]
    with pytest.raises(IndexError):
        packed[0].ids[4]  # noqa: B018


def test_a_second_run_reads_the_cache_and_does_not_tokenize(
    tmp_path: Path, user_cache: Path, encoder_calls: list[str]
) -> None:
    charrnn.train(NAMES, task="classify", out=tmp_path / "a", max_steps=2, **TINY)
    assert encoder_calls  # the first run tokenized the examples
    caches = sorted((user_cache / "tokens").iterdir())
    assert [p.name.split("-")[0] for p in caches] == ["examples", "examples"]  # training and validation
    stamps = {p: p.stat().st_mtime_ns for p in user_cache.rglob("*")}
    encoder_calls.clear()
    charrnn.train(NAMES, task="classify", out=tmp_path / "b", max_steps=2, **TINY)
    assert encoder_calls == []  # read from the cache
    assert {p: p.stat().st_mtime_ns for p in user_cache.rglob("*")} == stamps  # nothing written again
    hashes = [rundir.read_metadata(tmp_path / run / rundir.RESUME_FILE).get("data_hash") for run in ("a", "b")]
    assert hashes[0] is not None and hashes[0] == hashes[1]  # the same encoded examples
    resumed = charrnn.train(resume=tmp_path / "a", max_steps=4)
    assert resumed.steps == 4 and encoder_calls == []
    charrnn.train(NAMES, condition="label", out=tmp_path / "c", max_steps=2, **TINY)
    assert encoder_calls == []  # the conditional model on the same data and tokenizer: the same cache


def test_cache_dir_holds_the_labelled_cache(tmp_path: Path, user_cache: Path) -> None:
    given = tmp_path / "given"
    charrnn.train(NAMES, task="classify", out=tmp_path / "run", max_steps=2, cache_dir=given, **TINY)
    assert sorted(p.name.split("-")[0] for p in given.iterdir()) == ["examples", "examples"]
    assert not (user_cache / "tokens").exists()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["cache_dir"]
    assert Path(saved).resolve() == given.resolve()


def damage(folder: Path, how: str) -> None:
    """Damage one file of an examples cache as `how` says."""
    tokens, offsets, labels = (folder / name for name in ("tokens.bin", "offsets.bin", "labels.bin"))
    if how == "an id changed within the vocabulary":  # only the recorded sha256 tells
        raw = bytearray(tokens.read_bytes())
        raw[0] = next(b for b in raw if b != raw[0])
        tokens.write_bytes(bytes(raw))
    elif how == "tokens truncated":
        tokens.write_bytes(tokens.read_bytes()[:-1])
    elif how == "an offset moved":
        values = np.frombuffer(offsets.read_bytes(), dtype="<u8").copy()
        values[1] += 1
        offsets.write_bytes(values.tobytes())
    elif how == "offsets truncated":
        offsets.write_bytes(offsets.read_bytes()[:-8])
    elif how == "a label out of range":
        values = np.frombuffer(labels.read_bytes(), dtype="<u4").copy()
        values[0] = 99
        labels.write_bytes(values.tobytes())
    elif how == "labels missing":
        labels.unlink()
    elif how == "header not JSON":
        (folder / "header.json").write_text("{", encoding="utf-8")
    elif how == "header of other examples":
        header = json.loads((folder / "header.json").read_text(encoding="utf-8"))
        header["examples"] += 1
        (folder / "header.json").write_text(json.dumps(header), encoding="utf-8")
    elif how == "tokens a link":
        (folder / "elsewhere").write_bytes(tokens.read_bytes())
        tokens.unlink()
        tokens.symlink_to(folder / "elsewhere")
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "an id changed within the vocabulary",
        "tokens truncated",
        "an offset moved",
        "offsets truncated",
        "a label out of range",
        "labels missing",
        "header not JSON",
        "header of other examples",
        "tokens a link",
    ],
)
def test_a_damaged_examples_cache_is_detected_and_rebuilt(tmp_path: Path, how: str) -> None:
    train, _, tokenizer, labels = names_parts()
    tokenizer_hash = rundir.tokenizer_fingerprint(tokenizer)
    root = tmp_path / "cache"
    reference, first = cached_encode(train, tokenizer, tokenizer_hash, labels, root)
    expected = (list(reference.ids), list(reference.labels))
    damage(first.folder, how)
    notes: list[str] = []
    again, rebuilt = cached_encode(train, tokenizer, tokenizer_hash, labels, root, notes.append)
    assert not rebuilt.reused and rebuilt.folder == first.folder
    assert len(notes) == 1 and "is rebuilt" in notes[0] and "\n" not in notes[0], notes
    assert (list(again.ids), list(again.labels)) == expected
    assert not (first.folder / "elsewhere").exists() and not (first.folder / "tokens.bin").is_symlink()
    _, reused = cached_encode(train, tokenizer, tokenizer_hash, labels, root)
    assert reused.reused


def test_a_rebuilt_cache_is_noted_under_the_training_header(tmp_path: Path, user_cache: Path) -> None:
    charrnn.train(NAMES, task="classify", out=tmp_path / "a", max_steps=2, **TINY)
    for folder in (user_cache / "tokens").iterdir():
        (folder / "header.json").write_text("{", encoding="utf-8")
    from charrnn.labelled.training import ClassifierRecipe, read_training_data

    config, _ = charrnn.api.effective_config(NAMES, task="classify", **TINY)
    recipe = ClassifierRecipe()
    data = read_training_data(config)
    tokenizer = recipe.build_tokenizers(config, data)
    _, _, info = recipe.encode(config, tokenizer, data)
    rebuilt = [note for note in info["notes"] if "is rebuilt" in note]
    assert len(rebuilt) == 2 and all("not valid JSON" in note for note in rebuilt)


def test_cache_list_shows_the_labelled_examples(tmp_path: Path, user_cache: Path) -> None:
    from charrnn.cli.display import PlainConsole

    charrnn.train(NAMES, task="classify", out=tmp_path / "run", max_steps=2, **TINY)
    listed = run_cli(["cache", "list", "--json"])
    entries = json.loads(listed.stdout)
    assert sorted(Path(e["path"]).name.split("-")[0] for e in entries) == ["examples", "examples"]
    assert all(e["part"] == "tokens" and e["bytes"] > 0 for e in entries)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("charrnn.cli.cache.out_console", lambda: PlainConsole(width=120, force_terminal=False))
        table = run_cli(["cache", "list"])
    assert table.code == 0 and "char ids of" in table.stdout and "labelled examples of names" in table.stdout
    assert "examples-" in table.stdout
    cleared = run_cli(["cache", "clear"])
    assert cleared.code == 0 and "2 entries" in cleared.stderr
    assert token_cache.EXAMPLES_PREFIX == "examples-"
