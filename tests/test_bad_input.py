"""Every bad input gets one clear line on stderr, a non-zero exit and no traceback (unless --debug)."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import pytest
import torch

from charrnn.core import rundir
from charrnn.core.errors import CharRNNError
from charrnn.lm.run import LanguageModelRun, read_config
from charrnn.lm.scoring import score_sentences
from tests.support import TINY_FLAGS, CliResult, run_cli, tiny_text, write_corpus

TRAIN = ["--max-steps", "2", "--eval-every", "2", *TINY_FLAGS]


def assert_error(result: CliResult, *fragments: str) -> str:
    """One `charrnn: error:` line (the last one on stderr), non-zero exit, no traceback; returns the line."""
    lines = result.stderr.splitlines()
    assert result.code != 0, result
    assert "Traceback" not in result.stderr
    assert [line for line in lines if line.startswith("charrnn:")] == lines[-1:], result.stderr
    assert lines[-1].startswith("charrnn: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def only_line(result: CliResult, *fragments: str) -> None:
    """Like `assert_error`, and stderr holds nothing else (the command failed before doing any work)."""
    assert_error(result, *fragments)
    assert result.stderr.count("\n") == 1 and result.stdout == ""


# --- corpora ------------------------------------------------------------------------------------------------


def test_missing_corpus(tmp_path: Path) -> None:
    only_line(run_cli(["train", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "r"), *TRAIN]), "no such file")
    assert not (tmp_path / "r").exists()  # nothing created for a run that cannot start


def test_directory_instead_of_a_file(tmp_path: Path, trained_run: Path) -> None:
    # a folder is a corpus (its *.txt files); one without any says how to pick its files
    only_line(
        run_cli(["train", str(tmp_path), "--out", str(tmp_path / "r"), *TRAIN]), "no files matching", "--glob"
    )
    only_line(run_cli(["score-sentence", str(trained_run), "--file", str(tmp_path)]), "is a directory")
    only_line(run_cli(["sample", str(trained_run / rundir.CONFIG_FILE)]), "is a file", "run directory")


@pytest.mark.parametrize("content", ["", "\n\n  \n", "\t \r\n"])
def test_empty_corpus(tmp_path: Path, content: str) -> None:
    corpus = tmp_path / "empty.txt"
    corpus.write_text(content, encoding="utf-8")
    only_line(run_cli(["train", str(corpus), "--out", str(tmp_path / "r"), *TRAIN]), "is empty")


def test_corpus_shorter_than_one_batch_of_one_chunk_says_what_to_lower(tmp_path: Path) -> None:
    corpus = tmp_path / "short.txt"
    corpus.write_text(tiny_text(300), encoding="utf-8")
    args = ["train", str(corpus), "--out", str(tmp_path / "r"), *TINY_FLAGS]
    args += ["--max-steps", "2", "--batch-size", "8"]
    line = assert_error(run_cli([*args, "--bptt", "64"]), "fewer than one batch of one chunk")
    assert "--batch-size 8" in line and "--bptt 64" in line and "lower --batch-size or --bptt" in line
    result = run_cli([*args, "--bptt", "8", "--overwrite"])
    assert result.code == 0, result.stderr  # lowering --bptt as advised works


def non_utf8_corpus(tmp_path: Path) -> tuple[Path, int]:
    """A corpus with one Latin-1 byte on its third line; returns it and that byte's offset."""
    head = tiny_text(600).encode("utf-8")
    prefix = b"hello\nworld\ncaf"
    path = tmp_path / "latin1.txt"
    path.write_bytes(prefix + b"\xe9 au lait\n" + head)
    return path, len(prefix)


def test_non_utf8_bytes_give_offset_and_line(tmp_path: Path) -> None:
    corpus, offset = non_utf8_corpus(tmp_path)
    result = run_cli(["train", str(corpus), "--out", str(tmp_path / "r"), *TRAIN])
    only_line(result, "not valid utf-8", "0xe9", f"offset {offset}", "(line 3)", "--encoding", "--errors replace")


@pytest.mark.parametrize("option", [["--encoding", "latin-1"], ["--errors", "replace"]])
def test_encoding_and_errors_options_read_the_same_file(tmp_path: Path, option: list[str]) -> None:
    corpus, _ = non_utf8_corpus(tmp_path)
    result = run_cli(["train", str(corpus), "--out", str(tmp_path / "r"), *TRAIN, *option])
    assert result.code == 0, result.stderr
    units = rundir.read_tokenizer(tmp_path / "r").units
    assert ("é" in units) == (option[0] == "--encoding") and ("\ufffd" in units) == (option[0] == "--errors")


def test_unknown_encoding_and_errors_values(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    only_line(run_cli(["train", str(corpus), *TRAIN, "--encoding", "klingon"]), "Unknown --encoding")
    only_line(run_cli(["train", str(corpus), *TRAIN, "--errors", "maybe"]), "--errors must be")


def test_binary_file(tmp_path: Path) -> None:
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    only_line(run_cli(["train", str(binary), "--out", str(tmp_path / "r"), *TRAIN]), "binary file")


# --- sampling -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--temperature", "0", "--temperature"),
        ("--temperature", "-1.5", "--temperature"),
        ("--temperature", "nan", "--temperature"),
        ("--temperature", "inf", "--temperature"),
        ("--temperature", "-inf", "--temperature"),
        ("--num", "0", "--num"),
        ("--num", "-3", "--num"),
        ("--length", "-1", "--length"),
        ("--top-k", "0", "--top-k"),
        ("--top-k", "-5", "--top-k"),
        ("--top-p", "0", "--top-p"),
        ("--top-p", "1.5", "--top-p"),
        ("--top-p", "-0.1", "--top-p"),
        ("--top-p", "nan", "--top-p"),
    ],
)
def test_sampling_settings_out_of_range(trained_run: Path, option: str, value: str, fragment: str) -> None:
    only_line(run_cli(["sample", str(trained_run), option, value]), fragment, value.replace("inf", ""))


def test_prime_made_only_of_unknown_units(trained_run: Path) -> None:
    only_line(
        run_cli(["sample", str(trained_run), "--prime", "日本語"]), "--prime", "never saw"
    )  # stdout stays empty
    result = run_cli(["sample", str(trained_run), "--prime", "日本 First", "--length", "3", "--seed", "1"])
    assert result.code == 0 and result.stdout.startswith("日本 First")  # some known units: fine


def test_cuda_asked_for_but_absent(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    only_line(run_cli(["sample", str(trained_run), "--device", "cuda"]), "--device cuda", "no CUDA GPU")
    only_line(run_cli(["score-sentence", str(trained_run), "hi", "--device", "cuda"]), "no CUDA GPU")
    corpus = write_corpus(tmp_path, chars=600)
    args = ["train", str(corpus), "--out", str(tmp_path / "r"), *TRAIN, "--device", "cuda"]
    only_line(run_cli(args), "no CUDA GPU", "--device cpu")


# --- scoring ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sentence", ["", "   ", "\t"])
def test_empty_sentence_to_score(trained_run: Path, sentence: str) -> None:
    only_line(run_cli(["score-sentence", str(trained_run), sentence]), "empty sentence")


def test_no_sentence_at_all(trained_run: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n", encoding="utf-8")
    assert_error(run_cli(["score-sentence", str(trained_run), "--file", str(blank)]), "No sentence to score")
    only_line(run_cli(["score-sentence", str(trained_run), "--file", str(tmp_path / "none.txt")]), "no such file")


def test_sentence_longer_than_anything_seen_is_still_scored(trained_run: Path) -> None:
    run = LanguageModelRun.load(trained_run)
    tokenizer, model = run.tokenizer, run.model
    corpus_chars = len(tiny_text(600))
    long = ("First Citizen: we are accounted poor citizens. " * 80)[: 4 * corpus_chars]
    assert len(long) > 100 * read_config(trained_run).training.bptt
    [score] = score_sentences(model, tokenizer, [long])
    assert score.n_tokens == len(long) + 1 and math.isfinite(score.logprob) and score.logprob < 0
    result = run_cli(["score-sentence", str(trained_run), long, "--json"])
    assert result.code == 0, result.stderr
    assert f'"n_tokens": {len(long) + 1}' in result.stdout


# --- output directories -------------------------------------------------------------------------------------


def test_output_directory_of_another_run_is_refused_unless_resume_or_overwrite(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    other = write_corpus(tmp_path, chars=900, name="other.txt")
    out = tmp_path / "run"
    assert run_cli(["train", str(corpus), "--out", str(out), *TRAIN]).code == 0
    before = (out / rundir.RESUME_FILE).read_bytes()
    only_line(
        run_cli(["train", str(other), "--out", str(out), *TRAIN]), "already holds a run", "--resume", "--overwrite"
    )
    assert (out / rundir.RESUME_FILE).read_bytes() == before  # untouched
    assert run_cli(["train", "--resume", str(out), "--max-steps", "3", "--threads", "1"]).code == 0
    assert run_cli(["train", str(other), "--out", str(out), *TRAIN, "--overwrite"]).code == 0
    assert read_config(out).corpus == str(other.resolve())


def test_output_directory_holding_other_files_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8")
    only_line(
        run_cli(["train", str(corpus), "--out", str(out), *TRAIN, "--overwrite"]), "not a charrnn run directory"
    )
    assert [p.name for p in out.iterdir()] == ["holiday.jpg"]


def test_output_path_under_a_regular_file(tmp_path: Path) -> None:
    """Unwritable even for root: a directory cannot be created inside a file."""
    corpus = write_corpus(tmp_path, chars=600)
    only_line(run_cli(["train", str(corpus), "--out", str(corpus / "run"), *TRAIN]), "Cannot create --out")
    only_line(run_cli(["train", str(corpus), "--out", str(corpus), *TRAIN]), "is a file")


def test_output_directory_without_write_permission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root ignores permission bits, so os.access is made to answer as it would for a normal user."""
    corpus = write_corpus(tmp_path, chars=600)
    out = tmp_path / "locked"
    out.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: False if Path(path) == out and mode & os.W_OK else real_access(path, mode)
    )
    only_line(run_cli(["train", str(corpus), "--out", str(out), *TRAIN]), "not writable")


def test_write_refused_by_the_file_system_mid_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only mount says yes to os.access for root, then refuses the write."""
    corpus = write_corpus(tmp_path, chars=600)
    real_mkstemp = tempfile.mkstemp

    def refuse(*args, **kwargs):
        if "model.safetensors" in kwargs.get("prefix", ""):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    result = run_cli(["train", str(corpus), "--out", str(tmp_path / "r"), *TRAIN])
    assert_error(result, "Could not write", "model.safetensors", "Permission denied")


# --- --debug ------------------------------------------------------------------------------------------------


def test_debug_shows_the_real_exception(tmp_path: Path) -> None:
    from charrnn.cli import main

    with pytest.raises(CharRNNError, match="no such run directory"):
        main(["--debug", "sample", str(tmp_path / "missing")])
