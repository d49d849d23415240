"""Token caches, corpus arguments and the held-out blocks: the streamed, memory-mapped path equals the in-memory one."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest

import charrnn
from charrnn.core import corpus as corpus_module
from charrnn.core import token_cache
from charrnn.core.config import TokenizerConfig
from charrnn.core.errors import CharRNNError
from charrnn.core.text import read_text
from charrnn.core.tokenizers import build_tokenizer
from charrnn.lm.heldout import TokenView, split_blocks
from charrnn.lm.truncated_bptt import StreamBatches
from tests.support import run_cli


@pytest.fixture
def two_files(tmp_path: Path, shakespeare_head: str) -> tuple[Path, str]:
    """A folder of two text files (one with CRLF line ends and no final newline) and their joined text."""
    folder = tmp_path / "books"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text(shakespeare_head[:3000].replace("\n", "\r\n") + "Σίσυφος ends", encoding="utf-8")
    (folder / "sub" / "a.txt").write_text(shakespeare_head[3000:], encoding="utf-8")
    (folder / "notes.md").write_text("not read: wrong extension\n", encoding="utf-8")
    files = corpus_module.expand_corpus([folder])
    joined = "".join(read_text(f) + ("" if read_text(f).endswith("\n") else "\n") for f in files)
    return folder, joined


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read corpora 97 bytes at a time, so that chunk boundaries fall everywhere (inside CRLF and UTF-8 too)."""
    monkeypatch.setattr(token_cache, "read_chunks", functools.partial(corpus_module.read_chunks, chunk_bytes=97))


def test_a_folder_is_its_txt_files_recursively_in_sorted_order(two_files) -> None:
    folder, _ = two_files
    assert corpus_module.expand_corpus([folder]) == [folder / "b.txt", folder / "sub" / "a.txt"]
    assert corpus_module.expand_corpus([folder], "*.md") == [folder / "notes.md"]
    with pytest.raises(CharRNNError, match="no files matching"):
        corpus_module.expand_corpus([folder], "*.csv")


def test_chunks_of_whole_lines_rebuild_the_text(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    text = "ab\r\ncd é\n\nΣ\r\nlast line without end"
    path.write_bytes(text.encode("utf-8"))
    for size in (1, 2, 3, 5, 64):
        pieces = list(corpus_module.read_chunks(path, chunk_bytes=size))
        assert "".join(pieces) == text.replace("\r\n", "\n")
        assert all(p.endswith("\n") for p in pieces[:-1])


@pytest.mark.parametrize(
    ("level", "lowercase"), [("char", False), ("char", True), ("word", False), ("word", True)]
)
def test_streamed_vocabulary_and_token_file_equal_the_in_memory_tokenizer(
    two_files, tmp_path: Path, small_chunks, level: str, lowercase: bool
) -> None:
    folder, joined = two_files
    files = corpus_module.expand_corpus([folder])
    config = TokenizerConfig(level=level, lowercase=lowercase)
    reference = build_tokenizer(joined, config)
    built = token_cache.cached_tokenizer(files, config, "utf-8", "strict", tmp_path / "cache")
    assert built.units == reference.units  # type: ignore[attr-defined]
    tokens = token_cache.cached_tokens(files, built, "h", "utf-8", "strict", tmp_path / "cache")
    assert tokens.header["dtype"] == ("|u1" if reference.vocab_size <= 256 else "<u2")
    np.testing.assert_array_equal(np.asarray(tokens.ids()), reference.encode_corpus(joined))
    assert [f["tokens"] for f in tokens.header["files"]] == [
        len(reference.encode_corpus(read_text(f))) for f in files
    ]


def test_word_level_in_two_worker_processes_gives_the_same_vocabulary_and_ids(
    two_files, tmp_path: Path, small_chunks, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, joined = two_files
    monkeypatch.setattr(token_cache, "_workers", lambda level, n_bytes: 2)
    files = corpus_module.expand_corpus([folder])
    config = TokenizerConfig(level="word", lowercase=True)
    reference = build_tokenizer(joined, config)
    built = token_cache.cached_tokenizer(files, config, "utf-8", "strict", tmp_path / "cache")
    assert built.units == reference.units  # type: ignore[attr-defined]
    tokens = token_cache.cached_tokens(files, built, "h", "utf-8", "strict", tmp_path / "cache")
    np.testing.assert_array_equal(np.asarray(tokens.ids()), reference.encode_corpus(joined))


def test_subword_trains_on_a_bounded_sample(two_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, joined = two_files
    files = corpus_module.expand_corpus([folder])
    seen: list[int] = []
    real = token_cache.SubwordTokenizer.train_on_lines
    monkeypatch.setattr(token_cache, "SAMPLE_BYTES", 1000)
    monkeypatch.setattr(token_cache, "read_chunks", functools.partial(corpus_module.read_chunks, chunk_bytes=500))

    def spy(lines, config):
        seen.append(sum(len(line) + 1 for line in lines))
        return real(lines, config)

    monkeypatch.setattr(token_cache.SubwordTokenizer, "train_on_lines", spy)
    tokenizer = token_cache.build_vocabulary(
        files, TokenizerConfig(level="subword", vocab_size=60), "utf-8", "strict"
    )
    assert tokenizer.vocab_size <= 60 and 0 < seen[0] < len(joined) / 4  # a spread-out fraction, not all


def test_the_cache_is_reused_until_a_file_changes(corpus_file: Path, tmp_path: Path) -> None:
    files, root = [corpus_file], tmp_path / "cache"
    tokenizer = token_cache.cached_tokenizer(files, TokenizerConfig(), "utf-8", "strict", root)
    first = token_cache.cached_tokens(files, tokenizer, "h", "utf-8", "strict", root)
    again = token_cache.cached_tokens(files, tokenizer, "h", "utf-8", "strict", root)
    assert not first.reused and again.reused and again.folder == first.folder
    other_tokenizer = token_cache.cached_tokens(files, tokenizer, "other", "utf-8", "strict", root)
    assert other_tokenizer.folder != first.folder
    text = corpus_file.read_text(encoding="utf-8")
    corpus_file.write_text(text.replace("a", "b", 1), encoding="utf-8")  # same size, new content
    os.utime(corpus_file, ns=(1, 1))
    changed = token_cache.cached_tokens(files, tokenizer, "h", "utf-8", "strict", root)
    assert not changed.reused and changed.folder != first.folder


def test_bad_utf8_names_the_file_and_its_byte_offset(two_files, tmp_path: Path, small_chunks) -> None:
    folder, _ = two_files
    bad = folder / "sub" / "c.txt"
    bad.write_bytes(b"fine line\n" * 30 + b"caf\xe9\n")
    files = corpus_module.expand_corpus([folder])
    with pytest.raises(CharRNNError, match=r"c\.txt is not valid utf-8: byte 0xe9 at offset 303 \(line 31\)"):
        token_cache.cached_tokenizer(files, TokenizerConfig(), "utf-8", "strict", tmp_path / "cache")


def test_held_out_blocks_cover_the_corpus_once_and_spread_across_it() -> None:
    ids = np.arange(100_000, dtype=np.uint32)
    train, val, block = split_blocks(ids, 0.1, bptt=16)
    assert block == 128
    both = np.concatenate([train.read(0, len(train)), val.read(0, len(val))])
    np.testing.assert_array_equal(np.sort(both), ids)  # every token exactly once
    held = val.read(0, len(val))
    assert abs(len(held) / len(ids) - 0.1) < 0.01
    assert held.min() < 2_000 and held.max() > 98_000  # from the start to the end, not only the tail
    np.testing.assert_array_equal(held[:block], np.arange(9 * block, 10 * block))  # block 9 of group 0


def test_stream_batches_over_segments_equal_those_over_the_joined_array() -> None:
    ids = np.arange(1000, dtype=np.uint16)
    view = TokenView.of(ids, [(0, 300), (400, 250), (900, 100)])
    joined = np.concatenate([ids[:300], ids[400:650], ids[900:]])
    mapped = StreamBatches.from_ids(view, batch_size=5, bptt=7)
    plain = StreamBatches.from_ids(joined, batch_size=5, bptt=7)
    assert len(mapped) == len(plain) and mapped.n_tokens == plain.n_tokens
    for index in range(len(plain)):
        for got, want in zip(mapped.chunk(index), plain.chunk(index), strict=True):
            assert got.tolist() == want.tolist()
    mine = mapped.with_rows(range(2, 4))  # one process's share of the streams
    assert mine.chunk(3)[0].tolist() == plain.chunk(3)[0][2:4].tolist()


@pytest.fixture
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user cache folder of this test's own ($CHARRNN_CACHE)."""
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache"


SETTINGS = {"batch_size": 2, "bptt": 8, "embed": 8, "hidden": 8, "layers": 1, "threads": 1, "seed": 3}


def test_training_builds_the_cache_in_the_user_cache_folder_and_resume_reuses_it(
    two_files, tmp_path: Path, user_cache: Path
) -> None:
    folder, _ = two_files
    before = sorted(folder.rglob("*"))
    charrnn.train(folder, out=tmp_path / "run", max_steps=4, eval_every=2, save_every=2, **SETTINGS)
    assert sorted(folder.rglob("*")) == before  # nothing written beside the corpus
    caches = sorted(p.name.split("-")[0] for p in (user_cache / "tokens").iterdir())
    assert caches == ["tokens", "vocab"]
    stamps = {p: p.stat().st_mtime_ns for p in user_cache.rglob("*")}
    result = charrnn.train(resume=tmp_path / "run", max_steps=6)
    assert result.steps == 6
    assert {p: p.stat().st_mtime_ns for p in user_cache.rglob("*")} == stamps


def test_the_user_cache_folder_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from charrnn.core.user_cache import cache_home

    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_home() == tmp_path / "mine"
    monkeypatch.delenv("CHARRNN_CACHE")
    assert cache_home() == tmp_path / "xdg" / "charrnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_home() == tmp_path / "home" / ".cache" / "charrnn"


def test_cache_dir_wins_and_old_caches_beside_the_corpus_are_still_read(
    corpus_file: Path, tmp_path: Path, user_cache: Path
) -> None:
    given = tmp_path / "given"
    charrnn.train(corpus_file, out=tmp_path / "a", max_steps=2, cache_dir=given, **SETTINGS)
    assert sorted(p.name.split("-")[0] for p in given.iterdir()) == ["tokens", "vocab"]
    assert not user_cache.exists()
    old = corpus_file.parent / token_cache.CACHE_DIR_NAME  # where versions before 0.3 wrote them
    given.rename(old)
    stamps = {p: p.stat().st_mtime_ns for p in old.rglob("*")}
    charrnn.train(corpus_file, out=tmp_path / "b", max_steps=2, **SETTINGS)
    assert not (user_cache / "tokens").exists()  # found beside the corpus: nothing built again
    assert {p: p.stat().st_mtime_ns for p in old.rglob("*")} == stamps


def test_a_corpus_in_a_read_only_folder_trains(corpus_file: Path, tmp_path: Path, user_cache: Path) -> None:
    import stat

    data = corpus_file.parent / "shared"
    data.mkdir()
    corpus = corpus_file.rename(data / "corpus.txt")
    data.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        result = charrnn.train(corpus, out=tmp_path / "run", max_steps=2, **SETTINGS)
    finally:
        data.chmod(stat.S_IRWXU)
    assert result.steps == 2 and [p.name for p in data.iterdir()] == ["corpus.txt"]


def test_cache_list_and_clear(corpus_file: Path, tmp_path: Path, user_cache: Path) -> None:
    from charrnn.cli.display import PlainConsole

    empty = run_cli(["cache", "list"])
    assert empty.code == 0 and "is empty" in empty.stderr
    charrnn.train(corpus_file, out=tmp_path / "run", max_steps=2, **SETTINGS)
    listed = run_cli(["cache", "list", "--json"])
    entries = __import__("json").loads(listed.stdout)
    assert sorted(e["path"].split("/")[-1].split("-")[0] for e in entries) == ["tokens", "vocab"]
    assert all(e["part"] == "tokens" and e["bytes"] > 0 for e in entries)
    with pytest.MonkeyPatch.context() as patch:  # the table at 80 columns: whole lines, the corpus named
        patch.setattr("charrnn.cli.cache.out_console", lambda: PlainConsole(width=80, force_terminal=False))
        table = run_cli(["cache", "list"])
    assert table.code == 0 and "char ids of corpus.txt" in table.stdout and "char vocabulary" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    cleared = run_cli(["cache", "clear"])
    assert cleared.code == 0 and "freed" in cleared.stderr and "2 entries" in cleared.stderr
    assert not any((user_cache / "tokens").iterdir())


def test_prepare_command_and_stdin_corpus(
    tmp_path: Path, shakespeare_head: str, monkeypatch, user_cache: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli(["prepare", "-", "--level", "word"], stdin=shakespeare_head)
    assert result.code == 0, result.stderr
    assert "corpus tokens" in result.stdout and "MB/s" in result.stdout
    assert not (tmp_path / token_cache.CACHE_DIR_NAME).exists()  # nothing written in the working folder
    spooled = list((user_cache / "stdin").glob("stdin-*.txt"))
    assert len(spooled) == 1 and spooled[0].read_text(encoding="utf-8") == shakespeare_head
    again = run_cli(["prepare", str(spooled[0]), "--level", "word"])
    assert again.code == 0 and "already cached" in again.stdout
