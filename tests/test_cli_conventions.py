"""The CLI as a new user meets it: bare `charrnn`, --version, clean help, notes for what is silently changed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from charrnn import __version__
from charrnn.cli.lm import show_token
from tests.support import REPO_ROOT, TINY_FLAGS
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


def test_exit_codes_tell_usage_user_and_internal_errors_apart(monkeypatch, capsys) -> None:
    code, _, err = run_cli(["sample", str(LM_RUN), "--no-such-flag"], capsys)  # does not parse: usage
    assert code == 2 and err.count("\n") == 1 and err.rstrip().endswith("(see --help)")
    code, _, err = run_cli(["sample", str(LM_RUN), "--length", "many"], capsys)  # wrong type: usage
    assert code == 2 and err.count("\n") == 1 and "--length" in err
    code, _, err = run_cli(["sample", str(LM_RUN.parent / "absent")], capsys)  # parses, refused: user error
    assert code == 1 and err.startswith("charrnn: error:") and err.count("\n") == 1

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("charrnn.cli.lm.load_run", broken)
    code, _, err = run_cli(["sample", str(LM_RUN)], capsys)  # a bug in charrnn: internal error
    assert code == 70 and err.startswith("charrnn: internal error: ZeroDivisionError: a bug")


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
    assert code == 1 and "holds a seq2seq run" in err
    code, _, err = run_cli(["seq2seq", "translate", str(LM_RUN), "Hallo"], capsys)
    assert code == 1 and "holds a language-model run" in err


def test_progress_bar_shows_last_and_best_validation() -> None:
    from rich.console import Console

    from charrnn.cli.display import RichReporter

    reporter = RichReporter(Console(file=io.StringIO(), force_terminal=True, width=200))
    reporter.start({"total_steps": 30, "level": "char"})
    for step, loss in ((10, 2.9), (20, 2.6839), (30, 2.7137)):
        reporter.evaluate({"step": step, "val_loss": loss, "best": loss == 2.6839})
    reporter.close()
    assert reporter.val_text == "2.7137 (best 2.6839)"


@pytest.mark.parametrize(("total", "shown"), [(None, "step 7  ep"), (30, "step 7/30  ep")])
def test_plain_progress_lines_show_a_step_count_only_when_there_is_one(total, shown) -> None:
    from rich.console import Console

    from charrnn.cli.display import RichReporter

    out = io.StringIO()
    reporter = RichReporter(Console(file=out, force_terminal=False, width=200))  # no terminal: plain lines
    reporter.start({"total_steps": total, "level": "char"})
    reporter.step({"step": 7, "epoch": 0.1, "train_loss": 2.5, "tokens_per_second": 1000.0})
    reporter.close()
    step_line = next(line for line in out.getvalue().splitlines() if line.startswith("step "))
    assert step_line.startswith(shown) and "None" not in step_line


class Messages:
    """A reporter that keeps the messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def start(self, info) -> None: ...
    def step(self, record) -> None: ...
    def evaluate(self, record) -> None: ...
    def message(self, text: str) -> None:
        self.messages.append(text)


def test_a_failed_first_check_leaves_no_empty_run_directory(tmp_path: Path, capsys) -> None:
    (tmp_path / "short.txt").write_text("Too short to train on.\n", encoding="utf-8")
    out = tmp_path / "new" / "run"
    code, _, err = run_cli(["train", str(tmp_path / "short.txt"), "--out", str(out), "--batch-size", "32"], capsys)
    assert code == 1 and "fewer than one batch" in err
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    run_cli(["train", str(tmp_path / "short.txt"), "--out", str(existing), "--batch-size", "32"], capsys)
    assert existing.is_dir()  # a folder the user made is kept


def test_sentencepiece_reducing_the_vocabulary_is_noted(tmp_path: Path, shakespeare_head: str) -> None:
    import charrnn

    (tmp_path / "c.txt").write_text(shakespeare_head[:2500], encoding="utf-8")
    reporter = Messages()
    charrnn.train(
        tmp_path / "c.txt", out=tmp_path / "sp", level="subword", vocab_size=5000, hidden=8, embed=8,
        batch_size=2, bptt=8, max_steps=1, threads=1, reporter=reporter,
    )  # fmt: skip
    vocab = charrnn.load(tmp_path / "sp").tokenizer.vocab_size
    assert vocab < 5000
    assert any(f"found {vocab:,} units" in m and "--vocab-size 5,000" in m for m in reporter.messages)


def test_errors_name_the_path_as_typed_not_the_symlink_target(tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "data").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["train", "data/empty.txt", "--out", "run"], capsys)
    assert code == 1 and "data/empty.txt is empty" in err and "real" not in err


def test_train_quiet_prints_nothing_on_success(tmp_path: Path, corpus_file: Path, capsys) -> None:
    code, out, err = run_cli(
        ["train", str(corpus_file), "--out", str(tmp_path / "q"), "--max-steps", "3", "--quiet", *TINY_FLAGS],
        capsys,
    )
    assert code == 0 and out == "" and err == ""
    assert (tmp_path / "q" / "model.safetensors").is_file()
    more = ["--resume", str(tmp_path / "q"), "--max-steps", "4", "--quiet", "--json"]
    code, out, err = run_cli(["train", *more], capsys)
    result = json.loads(out)
    assert code == 0 and err == "" and result["steps"] == 4 and result["run_dir"] == str(tmp_path / "q")


def test_shell_completion_completes_commands_and_flags(monkeypatch, capsys) -> None:
    monkeypatch.setenv("_CHARRNN_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "charrnn sample --te")
    monkeypatch.setenv("COMP_CWORD", "2")
    code, out, _ = run_cli([], capsys)
    assert code == 0 and out.split() == ["--temperature"]
