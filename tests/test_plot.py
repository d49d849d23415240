"""`charrnn plot`: a real PNG of the expected size, and one line without matplotlib."""

from __future__ import annotations

import builtins
import struct
from pathlib import Path

import pytest

from charrnn.cli.plot import DPI, FIGURE_SIZE, time_unit
from tests.support import REPO_ROOT
from tests.test_cli import run_cli

OLD_RUNS = REPO_ROOT / "tests" / "data" / "old_runs"
RUNS = [str(OLD_RUNS / "lm-char" / "run"), str(OLD_RUNS / "seq2seq-char" / "run")]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking its signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("axis", ["step", "time"])
def test_plot_writes_a_png_of_the_figure_size(tmp_path: Path, axis: str, capsys) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    code, _, err = run_cli(["plot", *RUNS, "-o", str(out), "--x", axis], capsys)
    assert code == 0, err
    assert png_size(out) == (round(FIGURE_SIZE[0] * DPI), round(FIGURE_SIZE[1] * DPI))
    assert out.stat().st_size > 10_000  # axes, labels and curves, not a blank canvas


def test_time_axis_unit_follows_the_longest_run() -> None:
    assert time_unit(30.0) == ("seconds", 1.0)
    assert time_unit(600.0) == ("minutes", 60.0)
    assert time_unit(36_000.0) == ("hours", 3600.0)


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path: Path, monkeypatch, capsys) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    code, _, err = run_cli(["plot", RUNS[0], "-o", str(tmp_path / "c.png")], capsys)
    assert code == 1 and err.count("\n") == 1 and "pip install 'charrnn[plot]'" in err
