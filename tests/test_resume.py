"""Exact resume: an interrupted and resumed CPU run repeats the uninterrupted run step for step, bit for bit."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import torch

import charrnn
from charrnn.core import resume, rundir
from charrnn.core.state import TrainState
from charrnn.lm.training import train_language_model
from tests.support import TINY_FLAGS, run_cli, start_cli, tiny_config, write_corpus

# 600 characters make 9 chunks per epoch (batch 4, bptt 16): 12 steps cross an epoch boundary. The seed and
# model are those the plateau check of the reference run was written with.
SETTINGS = {
    "eval_every": 2, "save_every": 5, "schedule": "plateau", "plateau_patience": 0, "lr": 0.05,
    "seed": 11, "hidden": 24, "dropout": 0.2,
}  # fmt: skip


def train_records(run_dir: Path) -> list[tuple[int, float, float]]:
    """(step, train loss, learning rate) of every train record in metrics.jsonl."""
    return [(r["step"], r["train_loss"], r["lr"]) for r in rundir.read_metrics(run_dir) if "train_loss" in r]


def cadence_evals(run_dir: Path, every: int) -> list[tuple[int, float]]:
    """(step, validation loss) of the evaluations on the regular cadence."""
    return [
        (r["step"], r["val_loss"])
        for r in rundir.read_metrics(run_dir)
        if "val_loss" in r and r["step"] % every == 0
    ]


def latest_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], TrainState]:
    """Tensors (weights, optimiser moments, hidden state, RNG) and counters of resume.safetensors."""
    tensors, meta = rundir.load_tensors(run_dir / rundir.RESUME_FILE)
    return tensors, TrainState(**meta["train_state"])


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> None:
    names = sorted(k for k in a if k.startswith(prefixes))
    assert names and names == sorted(k for k in b if k.startswith(prefixes))
    for name in names:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A corpus and one uninterrupted 12-step run on it."""
    root = tmp_path_factory.mktemp("reference")
    corpus = write_corpus(root, chars=600)
    train_language_model(tiny_config(corpus, max_steps=12, **SETTINGS), root / "whole")
    return corpus, root / "whole"


def test_reference_run_exercises_what_resume_must_restore(reference: tuple[Path, Path]) -> None:
    _, whole = reference
    records = train_records(whole)
    assert [r[0] for r in records] == list(range(1, 13))
    assert len({r[2] for r in records}) > 1  # the plateau schedule lowered the learning rate on the way
    _, state = latest_state(whole)
    assert state.epoch == 1 and state.chunk == 3  # crossed an epoch boundary (9 chunks per epoch)


@pytest.mark.parametrize("stop_at", [6, 9, 10])
def test_stopped_and_resumed_run_is_bit_identical(
    reference: tuple[Path, Path], tmp_path: Path, stop_at: int
) -> None:
    corpus, whole = reference
    run = tmp_path / "run"
    first = train_language_model(tiny_config(corpus, max_steps=stop_at, **SETTINGS), run)
    assert first.steps == stop_at and first.stop_reason == "max_steps"
    charrnn.train(resume=run, max_steps=12)

    assert train_records(run) == train_records(whole)
    assert cadence_evals(run, SETTINGS["eval_every"]) == cadence_evals(whole, SETTINGS["eval_every"])
    got, got_state = latest_state(run)
    want, want_state = latest_state(whole)
    assert_same_tensors(got, want, ("model.", "optim.", "task.hidden.", "rng."))
    assert (got_state.step, got_state.epoch, got_state.chunk, got_state.lr_scale) == (
        want_state.step,
        want_state.epoch,
        want_state.chunk,
        want_state.lr_scale,
    )


def test_stop_flag_mid_run_resumes_bit_identical(reference: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, whole = reference
    calls = iter(range(1000))
    stopped = train_language_model(
        tiny_config(corpus, max_steps=12, **SETTINGS), tmp_path / "run", should_stop=lambda: next(calls) >= 7
    )
    assert stopped.stop_reason == "interrupted" and stopped.steps == 7
    charrnn.train(resume=tmp_path / "run", max_steps=12)
    assert train_records(tmp_path / "run") == train_records(whole)
    assert_same_tensors(latest_state(tmp_path / "run")[0], latest_state(whole)[0], ("model.",))


@pytest.mark.parametrize("tamper", ["task.hidden.", "rng.torch"])
def test_resume_depends_on_the_saved_hidden_state_and_rng(
    reference: tuple[Path, Path], tmp_path: Path, tamper: str
) -> None:
    """Control: the comparison above would notice a resume that dropped the hidden state or the dropout RNG."""
    corpus, whole = reference
    run = tmp_path / "run"
    train_language_model(tiny_config(corpus, max_steps=6, **SETTINGS), run)
    tensors, meta = rundir.load_tensors(run / rundir.RESUME_FILE)
    if tamper == "task.hidden.":
        assert any(k.startswith("task.hidden.") for k in tensors)
        tensors = {k: torch.zeros_like(v) if k.startswith("task.hidden.") else v for k, v in tensors.items()}
    else:
        generator = torch.Generator().manual_seed(99)
        tensors["rng.torch"] = generator.get_state()
    rundir.save_tensors(run / rundir.RESUME_FILE, tensors, meta)
    charrnn.train(resume=run, max_steps=12)
    got, want = train_records(run), train_records(whole)
    assert got[:6] == want[:6] and got[6:] != want[6:]


def test_partial_loss_window_survives_a_resume(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    settings = {**SETTINGS, "log_every": 4}
    train_language_model(tiny_config(corpus, max_steps=8, **settings), tmp_path / "whole")
    train_language_model(tiny_config(corpus, max_steps=6, **settings), tmp_path / "run")
    assert [r[0] for r in train_records(tmp_path / "run")] == [4]  # steps 5-6 are waiting in the window
    charrnn.train(resume=tmp_path / "run", max_steps=8)
    assert train_records(tmp_path / "run") == train_records(tmp_path / "whole")  # step 8 averages 5-8


def test_save_every_minutes_saves_between_step_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    saves: list[int] = []
    original = rundir.save_tensors

    def recording(path: Path, tensors, metadata=None) -> None:
        if Path(path).name == rundir.RESUME_FILE:
            saves.append(metadata["train_state"]["step"])
        original(path, tensors, metadata)

    monkeypatch.setattr(resume, "save_tensors", recording)  # the resume module writes resume.safetensors
    clock = iter(range(0, 1_000_000, 30))  # every reading of the clock advances 30 s
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(clock)))
    config = tiny_config(corpus, max_steps=6, save_every=1000, save_every_minutes=1.0, eval_every=1000)
    train_language_model(config, tmp_path / "run")
    assert saves[0] == 0 and saves[-1] == 6  # the step-0 checkpoint and the one at the end
    assert set(range(1, 6)) & set(saves), saves  # timed saves in between, although --save-every is 1000


def wait_for_step(run_dir: Path, step: int, process, timeout: float = 60.0) -> None:
    """Wait until metrics.jsonl shows a train record at `step` or later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r[0] >= step for r in train_records(run_dir)):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within {timeout} s")


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_prints_resume_command_and_resume_is_exact(tmp_path: Path, signum: int, code: int) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    # plateau and a fixed warmup: a cosine schedule and the default warmup (5% of the run when shorter than
    # 100 steps) depend on --max-steps, which differs between the runs compared
    args = [*TINY_FLAGS, "--eval-every", "3", "--save-every", "1000", "--log-every", "1", "--lr", "0.02"]
    args += ["--schedule", "plateau", "--warmup-steps", "100"]
    run = tmp_path / "run"
    process = start_cli(["train", str(corpus), "--out", str(run), "--max-steps", "100000", *args], tmp_path)
    wait_for_step(run, 3, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert f"charrnn train --resume {run}" in err and "Traceback" not in err
    _, state = latest_state(run)
    assert state.step >= 3  # the checkpoint holds the steps done before the signal (--save-every is 1000)
    target = state.step + 4

    resumed = run_cli(["train", "--resume", str(run), "--max-steps", str(target), "--threads", "1"])
    assert resumed.code == 0, resumed.stderr
    whole = tmp_path / "whole"
    uninterrupted = run_cli(["train", str(corpus), "--out", str(whole), "--max-steps", str(target), *args])
    assert uninterrupted.code == 0, uninterrupted.stderr
    assert train_records(run) == train_records(whole)
    assert [r[0] for r in train_records(run)] == list(range(1, target + 1))
    assert_same_tensors(latest_state(run)[0], latest_state(whole)[0], ("model.", "optim."))


def test_second_ctrl_c_exits_at_once_and_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    run = tmp_path / "run"
    args = [*TINY_FLAGS, "--save-every", "1", "--eval-every", "2", "--log-every", "1"]
    process = start_cli(["train", str(corpus), "--out", str(run), "--max-steps", "100000", *args], tmp_path)
    wait_for_step(run, 2, process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err
    _, state = latest_state(run)  # loads: the checksum and every tensor are intact
    assert state.step >= 2


def test_second_sigint_raises_keyboard_interrupt_in_process() -> None:
    from charrnn.cli.display import StopFlag

    flag = StopFlag()
    previous = flag.install()
    try:
        with pytest.raises(KeyboardInterrupt):  # before the loop asks, there is no step to finish: at once
            signal.raise_signal(signal.SIGINT)
        assert not flag()  # the training loop has started asking
        signal.raise_signal(signal.SIGINT)
        assert flag() and flag.signal == signal.SIGINT  # the first one only asks to stop
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    finally:
        flag.restore(previous)
    assert signal.getsignal(signal.SIGINT) is previous[signal.SIGINT]


def test_ctrl_c_during_the_stop_time_evaluation_loses_no_step(
    reference: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import charrnn.lm.truncated_bptt as truncated_bptt

    corpus, whole = reference
    calls = iter(range(1000))
    real_evaluate = truncated_bptt.evaluate_stream

    def evaluate(model, batches, device, max_tokens=None):
        if stopping:
            raise KeyboardInterrupt  # the second Ctrl-C arrives while the stop-time evaluation runs
        return real_evaluate(model, batches, device, max_tokens)

    def should_stop() -> bool:
        nonlocal stopping
        stopping = next(calls) >= 7
        return stopping

    stopping = False
    monkeypatch.setattr(truncated_bptt, "evaluate_stream", evaluate)
    with pytest.raises(KeyboardInterrupt):
        train_language_model(
            tiny_config(corpus, max_steps=12, **SETTINGS), tmp_path / "run", should_stop=should_stop
        )
    monkeypatch.undo()
    assert latest_state(tmp_path / "run")[1].step == 7  # step 7 was saved before the evaluation began
    charrnn.train(resume=tmp_path / "run", max_steps=12)
    assert train_records(tmp_path / "run") == train_records(whole)
