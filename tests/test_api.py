"""The Python API: the API and the CLI are one code path (the README's example runs in tests/test_docs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import charrnn
from charrnn.core.errors import CharRNNError

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_sample_returns_prime_plus_continuation_and_stream_matches(tmp_path: Path, corpus_file: Path) -> None:
    result = charrnn.train(
        corpus_file, out=tmp_path / "run", max_steps=8, hidden=16, embed=8, batch_size=4, bptt=16
    )
    run = charrnn.load(result.run_dir)
    text = run.sample(prime="To", length=30, temperature=0.9, seed=3)
    assert isinstance(text, str) and text.startswith("To") and len(text) == 32
    assert "".join(run.stream(prime="To", length=30, temperature=0.9, seed=3)) == text
    many = run.sample(prime="To", length=30, num=3, seed=3, until_eos=True)
    assert isinstance(many, list) and len(many) == 3 and all(t.startswith("To") and "\n" not in t for t in many)
    assert run.sample(prime="To", length=30, greedy=True) == run.sample(prime="To", length=30, greedy=True)


def test_cli_sample_prints_what_the_api_returns(
    tmp_path: Path, corpus_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from charrnn.cli import main

    result = charrnn.train(
        corpus_file, out=tmp_path / "run", max_steps=6, hidden=16, embed=8, batch_size=4, bptt=16
    )
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["sample", str(result.run_dir), "-p", "KING", "-n", "40", "--seed", "9", "-t", "0.7"])
    assert capsys.readouterr().out == charrnn.load(result.run_dir).sample("KING", 40, 0.7, seed=9) + "\n"


def test_info_describes_the_run(tmp_path: Path, corpus_file: Path) -> None:
    result = charrnn.train(
        corpus_file, out=tmp_path / "run", max_steps=6, hidden=16, embed=8, batch_size=4, bptt=16
    )
    info = charrnn.load(result.run_dir).info()
    assert info["kind"] == "lm" and info["level"] == "char" and info["steps"] == 6
    assert info["best_val_loss"] == pytest.approx(result.best_val_loss)
    assert info["parameters"] == sum(p.numel() for p in charrnn.load(result.run_dir).model.parameters())
    assert info["config"]["model"]["hidden"] == 16


def test_load_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CharRNNError, match="does not exist"):
        charrnn.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CharRNNError, match="not a charrnn run directory"):
        charrnn.load(tmp_path / "empty")
