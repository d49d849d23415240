"""What the clipping did: gradient norms in metrics.jsonl, the summary and `info`, resumed bit for bit (charrnn.core.gradnorms)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import charrnn
from charrnn.core import rundir
from charrnn.core.gradnorms import GradNormTally
from charrnn.core.state import TrainState
from charrnn.lm.training import train_language_model
from tests.support import REPO_ROOT, run_cli, tiny_config, write_corpus

SETTINGS = {"log_every": 4, "clip": 0.5, "lr": 0.05, "eval_every": 100, "save_every": 100, "hidden": 24}
GRAD_FIELDS = ("step", "train_loss", "grad_norm_mean", "grad_norm_max", "clipped")


def window_records(run_dir: Path) -> list[tuple]:
    return [tuple(r[k] for k in GRAD_FIELDS) for r in rundir.read_metrics(run_dir) if "train_loss" in r]


def test_windows_hold_the_mean_max_and_clipped_share_of_the_norms_before_clipping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    norms: list[float] = []
    clip_norm = torch.nn.utils.clip_grad_norm_

    def recording(parameters, max_norm, *args, **kwargs):
        norm = clip_norm(parameters, max_norm, *args, **kwargs)
        norms.append(float(norm))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    corpus = write_corpus(tmp_path, chars=600)
    result = train_language_model(tiny_config(corpus, max_steps=9, **SETTINGS), tmp_path / "run")
    assert len(norms) == 9
    records = [r for r in rundir.read_metrics(tmp_path / "run") if "train_loss" in r]
    assert [r["step"] for r in records] == [4, 8, 9]  # 9 chunks make an epoch: its end closes a window
    for record, window in zip(records, (norms[0:4], norms[4:8], norms[8:9]), strict=True):
        assert record["grad_norm_mean"] == pytest.approx(sum(window) / len(window), rel=1e-12)
        assert record["grad_norm_max"] == max(window)
        assert record["clipped"] == sum(n > 0.5 for n in window) / len(window)
    clipped = sum(n > 0.5 for n in norms)
    assert 0 < clipped < 9  # the threshold cuts through the norms: the shares above could be wrong
    assert result.clipped_share == clipped / 9
    facts = json.loads(run_cli(["info", str(tmp_path / "run"), "--json"]).stdout)
    assert facts["clipped_share"] == clipped / 9
    shown = run_cli(["info", str(tmp_path / "run")]).stdout
    assert f"clipped {100 * clipped / 9:.0f}% of steps" in shown


def test_gradient_norms_survive_a_resume_in_the_middle_of_a_window(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    train_language_model(tiny_config(corpus, max_steps=10, **SETTINGS), tmp_path / "whole")
    train_language_model(tiny_config(corpus, max_steps=6, **SETTINGS), tmp_path / "run")
    result = charrnn.train(resume=tmp_path / "run", max_steps=10)  # steps 5-6 wait in the window
    assert window_records(tmp_path / "run") == window_records(tmp_path / "whole")
    assert result.clipped_share == rundir.run_summary(tmp_path / "whole")["clipped_share"]


def test_a_resume_file_without_the_tally_still_resumes(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    train_language_model(tiny_config(corpus, max_steps=6, **SETTINGS), tmp_path / "run")
    path = tmp_path / "run" / rundir.RESUME_FILE
    tensors, meta = rundir.load_tensors(path)
    for name in (
        "window_grad_sum",
        "window_grad_max",
        "window_clipped",
        "window_grad_steps",
        "clipped_steps",
        "grad_steps",
    ):
        del meta["train_state"][name]  # as charrnn wrote it before the tally
    rundir.save_tensors(path, tensors, meta)
    assert rundir.run_summary(tmp_path / "run")["clipped_share"] is None
    result = charrnn.train(resume=tmp_path / "run", max_steps=10)
    assert result.steps == 10 and result.clipped_share is not None
    window = next(r for r in rundir.read_metrics(tmp_path / "run") if r.get("step") == 8 and "train_loss" in r)
    assert window["clipped"] in (0.0, 0.5, 1.0)  # the loss counts steps 5-8, the norms only 7-8 (after the resume)


def test_adding_a_step_reads_nothing_back_from_the_device() -> None:
    """On the meta device a tensor has no values: any read back (.item(), bool()) would raise."""
    tally = GradNormTally(TrainState(), torch.device("meta"))
    for _ in range(3):
        tally.add(torch.tensor(2.0, device="meta"), clip=1.0)
        tally.add(None, clip=1.0)


def test_non_finite_norms_are_not_counted() -> None:
    state = TrainState()
    tally = GradNormTally(state, torch.device("cpu"))
    for norm in (0.5, float("inf"), 3.0, float("nan")):
        tally.add(torch.tensor(norm), clip=1.0)
    assert tally.close_window(state) == {"grad_norm_mean": 1.75, "grad_norm_max": 3.0, "clipped": 0.5}
    assert tally.close_window(state) == {} and tally.clipped_share() == 0.5


def test_plot_shows_the_gradient_norm_beside_the_loss(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    corpus = write_corpus(tmp_path, chars=600)
    train_language_model(tiny_config(corpus, max_steps=8, **SETTINGS), tmp_path / "run")
    out = tmp_path / "curves.png"
    result = run_cli(["plot", str(tmp_path / "run"), "--grad-norm", "-o", str(out)])
    assert result.code == 0 and out.read_bytes()[:4] == b"\x89PNG"
    old = REPO_ROOT / "tests" / "data" / "old_runs" / "lm-char" / "run"
    refused = run_cli(["plot", str(old), "--grad-norm", "-o", str(tmp_path / "old.png")])
    assert refused.code == 1 and "No gradient norms logged" in refused.stderr


def test_a_damaged_tally_in_a_resume_file_counts_from_zero() -> None:
    state = TrainState(window_grad_sum="much", window_clipped=None, grad_steps=float("nan"), clipped_steps=True)  # type: ignore[arg-type]
    tally = GradNormTally(state, torch.device("cpu"))
    tally.add(torch.tensor(2.0), clip=1.0)
    assert tally.close_window(state) == {"grad_norm_mean": 2.0, "grad_norm_max": 2.0, "clipped": 1.0}
    assert tally.clipped_share() == 1.0
