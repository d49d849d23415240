"""Numerical faults: a non-finite loss or gradient skips the step; a run of them rolls back and lowers the LR."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from charrnn.core import resume, rundir
from charrnn.core.state import SilentReporter, TrainState
from charrnn.lm.model import LanguageModel
from charrnn.lm.training import train_language_model
from tests.support import TINY_FLAGS, run_cli, tiny_config, write_corpus


class Recorder(SilentReporter):
    """A reporter that keeps the messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)


def inject_faults(monkeypatch: pytest.MonkeyPatch, faults: dict[int, str]) -> None:
    """Make training step N fail: 'loss' (NaN loss), 'grad' (NaN gradient only) or 'blowup' (NaN weights and loss)."""
    real_loss = LanguageModel.loss
    calls = {"train": 0}

    def loss(self: LanguageModel, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        value = real_loss(self, hidden, targets)
        if not self.training:
            return value
        calls["train"] += 1
        fault = faults.get(calls["train"])
        if fault == "blowup":
            with torch.no_grad():
                self.head.weight.fill_(math.nan)
        if fault in ("loss", "blowup"):
            return value * math.nan
        if fault == "grad":
            return value + 0.0 * torch.sqrt(hidden.sum() * 0.0)  # forward 0, backward 0 * inf = NaN
        return value

    monkeypatch.setattr(LanguageModel, "loss", loss)


def resume_state(run: Path) -> tuple[dict[str, torch.Tensor], TrainState]:
    tensors, meta = rundir.load_tensors(run / rundir.RESUME_FILE)
    return tensors, TrainState(**meta["train_state"])


def adam_steps(tensors: dict[str, torch.Tensor]) -> int:
    return int(tensors["optim.0.step"])


def test_isolated_faults_are_skipped_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    inject_faults(monkeypatch, {3: "loss", 5: "grad"})
    result = run_cli(
        ["train", str(corpus), "--out", str(tmp_path / "run"), "--max-steps", "8", "--log-every", "1", *TINY_FLAGS]
    )
    assert result.code == 0, result.stderr
    assert "step 3: non-finite loss or gradient, step skipped" in result.stderr
    assert "step 5: non-finite loss or gradient, step skipped" in result.stderr
    assert "2 steps skipped" in result.stderr
    tensors, state = resume_state(tmp_path / "run")
    assert state.skipped_steps == 2 and state.rollbacks == 0 and state.lr_scale == 1.0
    assert adam_steps(tensors) == 6  # the optimiser stepped 8 - 2 times
    losses = {r["step"]: r["train_loss"] for r in rundir.read_metrics(tmp_path / "run") if "train_loss" in r}
    assert sorted(losses) == [1, 2, 4, 6, 7, 8] and all(math.isfinite(v) for v in losses.values())
    assert all(torch.isfinite(t).all() for name, t in tensors.items() if name.startswith("model."))


def test_a_run_of_faults_restores_the_last_good_checkpoint_and_lowers_the_lr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    config = tiny_config(corpus, max_steps=12, save_every=1, eval_every=100, max_bad_steps=3, schedule="constant")
    checkpoints: dict[int, dict[str, torch.Tensor]] = {}
    real_save = rundir.save_tensors

    def remember(path: Path, tensors: dict[str, torch.Tensor], metadata: Any = None) -> None:
        if Path(path).name == rundir.RESUME_FILE:
            checkpoints[metadata["train_state"]["step"]] = {k: v.clone() for k, v in tensors.items()}
        real_save(path, tensors, metadata)

    monkeypatch.setattr(resume, "save_tensors", remember)  # the resume module writes resume.safetensors
    inject_faults(monkeypatch, {6: "blowup", 7: "loss", 8: "loss"})
    reporter = Recorder()
    result = train_language_model(config, tmp_path / "run", reporter=reporter)

    assert result.skipped_steps == 3 and result.steps == 12
    assert "step 6: weights are not finite; keeping the previous checkpoint" in reporter.messages
    assert (
        "3 non-finite steps in a row: restored the weights and optimiser of the checkpoint at step 5, "
        "learning rate scaled to x0.5" in reporter.messages
    )
    assert sorted(checkpoints) == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12]  # none of the broken weights (6, 7)
    restored = checkpoints[8]  # saved right after the roll-back at step 8: step 5's weights and moments
    assert all(
        torch.equal(restored[k], v) for k, v in checkpoints[5].items() if k.startswith(("model.", "optim."))
    )
    tensors, state = resume_state(tmp_path / "run")
    assert state.rollbacks == 1 and state.lr_scale == 0.5 and state.skipped_steps == 3
    assert all(torch.isfinite(t).all() for name, t in tensors.items() if name.startswith("model."))
    assert adam_steps(checkpoints[9]) == adam_steps(checkpoints[5]) + 1  # continued from step 5's optimiser
    lrs = {r["step"]: r["lr"] for r in rundir.read_metrics(tmp_path / "run") if "train_loss" in r}
    assert lrs[5] == config.training.lr and lrs[9] == lrs[12] == config.training.lr / 2
    assert not {6, 7, 8} & set(lrs)


def test_without_the_rollback_the_run_would_stay_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: blown-up weights keep every later step non-finite unless something restores them."""
    corpus = write_corpus(tmp_path, chars=600)
    config = tiny_config(corpus, max_steps=10, save_every=1, eval_every=100, max_bad_steps=1000)
    inject_faults(monkeypatch, {6: "blowup"})
    result = train_language_model(config, tmp_path / "run")
    assert result.skipped_steps == 5  # steps 6-10
