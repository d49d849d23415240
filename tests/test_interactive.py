"""`charrnn sample --interactive` scripted through a non-terminal stdin: primes, commands, :quit."""

from __future__ import annotations

import io

import pytest

import charrnn
from charrnn.cli.interactive import Settings, apply_command
from charrnn.core.errors import CharRNNError
from tests.support import REPO_ROOT
from tests.test_cli import run_cli

LM_RUN = REPO_ROOT / "tests" / "data" / "old_runs" / "lm-char" / "run"


def test_scripted_session_streams_seeded_samples_and_obeys_commands(monkeypatch, capsys) -> None:
    script = (
        "First\n:temp 0.5\n:len 12\n:seed 3\n:topp 0.9\nCitizen\n:bogus\n:greedy\nCitizen\n:quit\nnever read\n"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    code, out, err = run_cli(["sample", str(LM_RUN), "--interactive", "-n", "20", "--seed", "1"], capsys)
    assert code == 0
    run = charrnn.load(LM_RUN)
    expected = [
        run.sample("First", 20, 1.0, seed=1),
        run.sample("Citizen", 12, 0.5, top_p=0.9, seed=3),
        run.sample("Citizen", 12, 0.5, top_p=0.9, greedy=True, seed=3),
    ]
    assert out == "".join(text + "\n" for text in expected)
    assert "unknown command :bogus" in err and "never read" not in out + err
    assert "> " not in err  # no prompt when stdin is not a terminal


def test_end_of_input_leaves_cleanly(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("First\n"))
    code, out, _ = run_cli(["sample", str(LM_RUN), "-i", "-n", "5", "--seed", "2"], capsys)
    assert code == 0 and out.startswith("First") and out.count("\n") >= 1


@pytest.mark.parametrize(
    ("command", "message"),
    [(":temp 0", ":temp must be > 0"), (":len x", ":len needs a number"), (":topp 1.5", ":topp must be in")],
)
def test_bad_commands_say_what_is_wrong(command: str, message: str) -> None:
    with pytest.raises(CharRNNError, match=message):
        apply_command(Settings(), command)


def test_commands_change_the_settings() -> None:
    settings = Settings()
    for command in (":temp 0.7", ":len 40", ":topp 0.8", ":seed 9", ":greedy"):
        apply_command(settings, command)
    assert settings == Settings(temperature=0.7, length=40, top_p=0.8, greedy=True, seed=9)
    apply_command(settings, ":temp 1.2")  # a temperature turns greedy off again
    assert not settings.greedy and apply_command(settings, ":quit") is None


def test_a_line_of_unknown_units_is_named_as_the_line_not_a_flag(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("ЖЖЖ\n"))
    code, _, err = run_cli(["sample", str(LM_RUN), "-i", "-n", "5"], capsys)
    assert code == 0 and "the line 'ЖЖЖ' is made only of units the model never saw" in err
    assert "--prime" not in err
