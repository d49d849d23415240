"""The command line end to end on a tiny corpus, and one-line errors for bad arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn.cli import main
from tests import support
from tests.support import REPO_ROOT, TINY_FLAGS


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run `charrnn ARGS` in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory, shakespeare_head: str) -> Path:
    """The run `charrnn train` writes for the tests below: they only read it."""
    root = tmp_path_factory.mktemp("cli")
    (root / "corpus.txt").write_text(shakespeare_head, encoding="utf-8")
    args = ["train", str(root / "corpus.txt"), "--out", str(root / "run"), *TINY_FLAGS]
    result = support.run_cli([*args, "--max-steps", "12", "--eval-every", "6"])
    assert result.code == 0, result.stderr
    return root / "run"


def test_train_writes_a_complete_run_directory(cli_run: Path, capsys) -> None:
    names = {p.name for p in cli_run.iterdir()}
    assert {"config.json", "tokenizer.json", "model.safetensors", "resume.safetensors", "metrics.jsonl"} <= names
    records = [json.loads(line) for line in (cli_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_loss" in r] == [6, 12]


def test_sample_streams_a_continuation_of_the_prime(cli_run: Path, capsys) -> None:
    code, out, _ = run_cli(["sample", str(cli_run), "--prime", "ROMEO:", "--length", "40", "--seed", "1"], capsys)
    assert code == 0 and out.startswith("ROMEO:")
    assert len(out) == len("ROMEO:") + 40 + 1  # one char per token plus the closing newline
    code, again, _ = run_cli(
        ["sample", str(cli_run), "--prime", "ROMEO:", "--length", "40", "--seed", "1"], capsys
    )
    assert again == out
    code, many, _ = run_cli(["sample", str(cli_run), "--num", "3", "--length", "10", "--until-eos"], capsys)
    assert code == 0 and many.count("--- sample ") == 3


@pytest.mark.parametrize("command", [["sample", "--length", "5"], ["score-sentence", "First"]])
def test_generation_commands_take_threads_default_one(cli_run: Path, capsys, command: list[str]) -> None:
    import torch

    name, *rest = command
    try:
        torch.set_num_threads(3)
        code, _, err = run_cli([name, str(cli_run), *rest], capsys)
        assert code == 0, err
        assert torch.get_num_threads() == 1  # the default for generation and scoring
        code, _, err = run_cli([name, str(cli_run), *rest, "--threads", "2"], capsys)
        assert code == 0, err
        assert torch.get_num_threads() == 2
        code, _, err = run_cli([name, str(cli_run), *rest, "--threads", "0"], capsys)
        assert code == 1 and err.strip() == "charrnn: error: --threads must be between 1 and 1024, got 0."
    finally:
        torch.set_num_threads(1)


def test_score_sentence_json_and_table(cli_run: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = run_cli(
        ["score-sentence", str(cli_run), "First Citizen:", "Before we proceed", "--json"], capsys
    )
    assert code == 0
    scores = json.loads(out)
    assert [s["sentence"] for s in scores] == ["First Citizen:", "Before we proceed"]
    assert scores[0]["n_tokens"] == len("First Citizen:") + 1
    assert scores[0]["tokens"][-1] == "<eos>"
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("First Citizen:\n\nBefore we proceed\n", encoding="utf-8")
    code, out, err = run_cli(["score-sentence", str(cli_run), "--file", str(sentences), "--per-token"], capsys)
    assert code == 0 and "perplexity" in out and "P(token | before)" in out
    assert "skipped 1 blank line" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "{run}", "--temperature", "0"], "--temperature"),
        (["sample", "{run}", "--temperature", "-2"], "--temperature"),
        (["sample", "{run}", "--num", "0"], "--num"),
        (["sample", "{tmp}/nowhere"], "no such run directory"),
        (["train", "{tmp}/missing.txt"], "no such file"),
        (["train", "{tmp}/empty.txt"], "empty"),
        (["train", "{tmp}/latin1.txt"], "offset"),
        (["score-sentence", "{run}", " "], "empty sentence"),
        (["train", "{tmp}/corpus.txt", "--hidden", "abc"], "hidden"),
    ],
)
def test_bad_arguments_give_one_line_and_nonzero_exit(
    args: list[str], message: str, cli_run: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    args = [a.format(run=cli_run, tmp=tmp_path) for a in args]
    code, _, err = run_cli(args, capsys)
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("charrnn: error:") and message in err
    assert "Traceback" not in err


def test_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "charrnn.cli", "train", str(tmp_path / "absent.txt")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"charrnn: error: {tmp_path / 'absent.txt'}: no such file."


def test_non_utf8_stdin_is_one_line_error(cli_run: Path, capsys, monkeypatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9 au lait\n")))
    code, _, err = run_cli(["score-sentence", str(cli_run)], capsys)
    assert code == 1 and err.count("\n") == 1 and "not valid UTF-8" in err and "offset 3" in err
