"""The CLI as a new user meets it: bare `charrnn`, --version, clean help, notes for what is silently changed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from charrnn import __version__
from charrnn.cli.lm import show_token
from tests.conftest import REPO_ROOT
from tests.test_cli import run_cli

LM_RUN = REPO_ROOT / "tests" / "data" / "old_runs" / "lm-char" / "run"


def test_bare_charrnn_prints_the_help_and_succeeds(capsys) -> None:
    code, out, err = run_cli([], capsys)
    assert code == 0 and "Usage: charrnn" in out and "error" not in err


def test_version_option(capsys) -> None:
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"charrnn {__version__}"


@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["score-sentence"], ["seq2seq", "translate"]])
def test_help_has_no_type_placeholders_for_flags_or_braces(command: list[str], capsys) -> None:
    code, out, _ = run_cli([*command, "--help"], capsys)
    assert code == 0
    assert "<bool>" not in out and "{" not in out.split("Usage:")[1].splitlines()[0]


def test_per_token_shows_spaces_and_line_ends() -> None:
    assert [show_token(t) for t in (" ", "a", "<eos>", "\t")] == ["␠", "a", "⏎", "\\t"]


def test_sample_notes_unknown_prime_units_and_ignored_temperature(capsys) -> None:
    code, out, err = run_cli(
        ["sample", str(LM_RUN), "--prime", "RO☃", "--greedy", "-t", "0.5", "-n", "5", "--seed", "1"], capsys
    )
    assert code == 0 and out.startswith("RO☃")
    assert "1 unit(s) of --prime are not in the model's vocabulary" in err
    assert "--temperature is ignored with --greedy" in err


class TerminalInput(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_score_sentence_on_a_terminal_reads_typed_lines(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", TerminalInput("First Citizen:\n\nSpeak, speak.\n"))
    code, out, err = run_cli(["score-sentence", str(LM_RUN), "--json"], capsys)
    assert code == 0 and "Ctrl-D" in err
    assert '"sentence": "Speak, speak."' in out


def test_wrong_kind_of_run_is_named_in_words(tmp_path: Path, capsys) -> None:
    seq2seq_run = REPO_ROOT / "tests" / "data" / "old_runs" / "seq2seq-char" / "run"
    code, _, err = run_cli(["sample", str(seq2seq_run)], capsys)
    assert code == 2 and "holds a seq2seq run" in err
    code, _, err = run_cli(["seq2seq", "translate", str(LM_RUN), "Hallo"], capsys)
    assert code == 2 and "holds a language-model run" in err
