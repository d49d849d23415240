"""The training loop both models share: optimisation steps until a stopping rule fires.

The data is walked as epochs of `task.batches_per_epoch` chunks (an LM's truncated-BPTT chunk, a
seq2seq batch); each chunk is one step, and `TrainState` counts where the walk is:

    epoch 0:  | chunk 0 | chunk 1 | ... | chunk N-1 |      N = task.batches_per_epoch
    epoch 1:  | chunk 0 | chunk 1 | ...                     state.step counts chunks over all epochs
                   ^
                   a resumed run starts at (state.epoch, state.chunk), the chunk after its checkpoint

Before each step the stopping rules are checked; after it come the logging window, the evaluation
and the save, each on its own cadence:

    stop?           --max-steps, --max-time, Ctrl-C/SIGTERM (all ranks agree); --epochs between epochs
    optimisation    lr -> forward -> backward -> clip -> optimiser step (or a skipped step)
    logging window  every --log-every steps and at the end of an epoch: the mean training loss and
                    the gradient norm before clipping (mean, max, share of steps clipped)
    evaluation      every --eval-every steps (by default 200, or a tenth of the run when that is sooner):
                    validation loss, best weights, plateau schedule
    save            every --save-every steps or --save-every-minutes: resume.safetensors

When a rule fires the run is saved, evaluated (unless the last step just was) and saved again.
--max-time is the wall-clock time of the session, from the start of `engine.train` (reading the data,
building the model) to the last save, evaluations and saves included: the loop stops when the next
step, the last evaluation and the saves around it would no longer fit, each estimated from the
session's own measurements; a last evaluation that would still overrun is skipped, with a note.
Everything here happens in a fixed order (random numbers, optimiser and scaler calls, records,
saves): a resumed run repeats an uninterrupted one bit for bit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from charrnn.core import distributed, rundir
from charrnn.core.checkpoints import keep_checkpoint
from charrnn.core.gradnorms import GradNormTally
from charrnn.core.optim import grad_scaler, learning_rate, update_plateau
from charrnn.core.resume import load_resume_state, save_resume_state
from charrnn.core.runtime import autocast
from charrnn.core.state import Reporter, TrainResult, TrainState, clock
from charrnn.core.task import Task

World = distributed.World


def run_training_loop(
    task: Task,
    optimizer: torch.optim.Optimizer,
    cfg: Any,
    state: TrainState,
    *,
    run_dir: Path,
    reporter: Reporter,
    should_stop: Callable[[], bool],
    data_hash: str,
    tokenizer_hash: str,
    total_steps: int | None,
    world: World = World(),
    started: float | None = None,
) -> TrainResult:
    """Step until a stopping rule fires: schedule, clipping, non-finite steps, metrics, evaluation, saves.

    `started` is the time.perf_counter() at which the session began (default: now): --max-time counts from it.
    """
    task.model.train()
    session = Session(
        task, optimizer, cfg, state, run_dir, reporter, should_stop, world, data_hash, tokenizer_hash, total_steps
    )
    session.start_clock(started)
    stop_reason = None
    while stop_reason is None and not epochs_done(cfg, state):
        if state.chunk == 0:  # not when resuming in the middle of an epoch
            task.start_epoch()
        while state.chunk < task.batches_per_epoch:
            stop_reason = session.stop_reason()
            if stop_reason is not None:
                break
            step = session.optimisation_step()
            session.count(step)
            if session.window_due():
                session.log_window(step.lr)
            if session.evaluation_due():
                session.evaluate()
            if session.save_due():
                session.save()
        if stop_reason is None:  # the epoch ran to its end
            state.epoch, state.chunk = state.epoch + 1, 0
    session.save()  # before the evaluation: a second Ctrl-C during it loses no step
    if session.last_eval_step != state.step and session.last_evaluation_fits():
        session.evaluate(scheduled=False)
        session.save()  # again, with the evaluation's best and last validation loss
    return session.result(stop_reason or "epochs")


def epochs_done(cfg: Any, state: TrainState) -> bool:
    """The --epochs rule, checked between epochs: every epoch asked for has run to its end."""
    return cfg.epoch_limit is not None and state.epoch >= cfg.epoch_limit


@dataclass(frozen=True)
class Step:
    """What one optimisation step did."""

    lr: float  # the learning rate it used
    loss: float  # its training loss, the mean over all ranks (not finite when the step was skipped for it)
    tokens: int  # target tokens it trained on, over all ranks
    finite: bool  # False when it was skipped: non-finite loss or gradient
    grad_norm: torch.Tensor | None  # ‖g‖ before clipping (a 0-d tensor, not synchronised); None without backward


@dataclass
class Session:
    """One call's training: the run it trains and the running values the loop's steps share."""

    task: Task
    optimizer: torch.optim.Optimizer
    cfg: Any
    state: TrainState
    run_dir: Path
    reporter: Reporter
    should_stop: Callable[[], bool]
    world: World
    data_hash: str
    tokenizer_hash: str
    total_steps: int | None  # None when only --max-time bounds the run
    session_start: float = field(init=False)  # time.perf_counter() when this session started (`start_clock`)
    loop_start: float = field(init=False)  # ... when its first step started: setup is what came before
    last_tick: float = field(init=False)  # ... at the end of the last step (or pause)
    step_seconds: float = 0.0  # the last step's duration, evaluations and saves excluded
    train_seconds: float = 0.0  # the session's steps, summed
    eval_seconds: float | None = None  # the last evaluation's duration (None before the first)
    save_seconds: float = 0.0  # the last save's duration
    paused_seconds: float = 0.0  # evaluations and saves, summed
    last_eval_time: float = field(init=False)  # time.perf_counter() at the end of the last evaluation
    tenth_of_time_passed: bool = False  # a tenth of --max-time since the last evaluation (all ranks agree)
    steps_before: int = field(init=False)  # state.step when this session started
    window_start: float = field(init=False)  # ... when the current logging window started
    last_save_time: float = field(init=False)  # ... at the last save (for --save-every-minutes)
    window_tokens: int = 0  # tokens trained on in the current logging window
    last_eval_step: int = -1
    elapsed_before: float = field(init=False)  # state.elapsed and state.tokens_seen when this session started
    tokens_before: int = field(init=False)
    params: list[torch.nn.Parameter] = field(init=False)  # the trained parameters (clipped together)
    device: torch.device = field(init=False)
    scaler: Any = field(init=False)  # the fp16 loss scaler (torch.amp.GradScaler); a no-op otherwise
    grads: GradNormTally = field(init=False)  # ‖g‖ before clipping, tallied on the device for the window and run

    def __post_init__(self) -> None:
        self.start_clock(None)
        self.elapsed_before, self.tokens_before = self.state.elapsed, self.state.tokens_seen
        self.steps_before = self.state.step
        self.state.chunks_per_epoch = self.task.batches_per_epoch
        self.window_start = time.perf_counter()
        self.last_save_time = time.perf_counter()
        self.params = [p for p in self.task.model.parameters() if p.requires_grad]
        self.device = next(self.task.model.parameters()).device
        self.scaler = grad_scaler(self.device, self.cfg.resolved_precision == "fp16")  # bf16 and fp32 need none
        self.grads = GradNormTally(self.state, self.device)

    # -- the clock --------------------------------------------------------------------------------

    def start_clock(self, started: float | None) -> None:
        """Count this session's time from `started` (a time.perf_counter(); default now)."""
        now = time.perf_counter()
        self.session_start = now if started is None else started
        self.loop_start = self.last_tick = now
        self.last_eval_time = self.session_start

    def pause(self, began: float) -> float:
        """End a pause (an evaluation or a save) that began at `began`: it counts neither as a step's time nor
        in the logging window's speed. Returns its duration."""
        seconds = time.perf_counter() - began
        self.paused_seconds += seconds
        self.last_tick += seconds
        self.window_start += seconds
        return seconds

    def tick(self) -> None:
        """Bring `state.elapsed` (wall-clock seconds over all sessions) up to now."""
        self.state.elapsed = self.elapsed_before + time.perf_counter() - self.session_start

    def reserve(self) -> float:
        """Seconds to keep for the next step and the run's end: the last evaluation and the saves around it."""
        return self.step_seconds + (self.eval_seconds or 0.0) + 2 * self.save_seconds

    def last_evaluation_fits(self) -> bool:
        """Whether the evaluation after the last step fits in --max-time; a note says so when it is skipped.

        It always runs when the run has no evaluation yet (no validation loss and no best weights without it).
        """
        if self.cfg.max_time is None or self.eval_seconds is None or self.state.best_val_loss is None:
            return True
        left = self.cfg.max_time * 60 - (time.perf_counter() - self.session_start) - self.save_seconds
        grace = min(1.0, 0.02 * self.cfg.max_time * 60)  # the estimate is the last evaluation's duration
        if self.eval_seconds <= max(left, 0.0) + grace:
            return True
        self.reporter.message(
            f"--max-time: the last evaluation is skipped (it takes about {clock(self.eval_seconds)}, "
            f"{clock(max(left, 0.0))} is left); model.safetensors holds the best weights evaluated so far"
        )
        return False

    # -- stopping ---------------------------------------------------------------------------------

    def stop_reason(self) -> str | None:
        """The rule that stops training before the next step: "max_steps", the task's own, "max_time", "interrupted", or None.

        Every rank counts the same steps; the clock and the interrupt are OR-ed over the ranks in one
        all-reduce, so that all of them stop at the same step.
        """
        cfg = self.cfg
        if cfg.max_steps is not None and self.state.step >= cfg.max_steps:
            return "max_steps"
        own_rule = getattr(self.task, "stop_reason", None)  # a task's own rule: a lesson stops once solved
        if own_rule is not None and (reason := own_rule()) is not None:
            return reason
        now = time.perf_counter()
        out_of_time = cfg.max_time is not None and now - self.session_start + self.reserve() >= cfg.max_time * 60
        tenth = cfg.max_time is not None and now - self.last_eval_time >= cfg.max_time * 6  # seconds in a tenth
        interrupted = self.should_stop()
        out_of_time, interrupted, self.tenth_of_time_passed = distributed.any_of(
            self.world, out_of_time, interrupted, tenth
        )
        if out_of_time:
            return "max_time"
        if interrupted:
            return "interrupted"
        return None

    # -- the optimisation step --------------------------------------------------------------------

    def optimisation_step(self) -> Step:
        """Train on chunk `state.chunk`: θ ← optimiser(θ, clipped ∇L), or skip the step when L or ∇L is not finite.

        Set the learning rate; forward under autocast; zero the gradients; agree with the other ranks
        whether the loss is finite; backward, unscale and clip; count the step; take it (or skip it);
        let the fp16 loss scaler adjust its scale.
        """
        state = self.state
        lr = self.set_learning_rate()
        with autocast(self.device, self.cfg.resolved_precision):
            loss, n_tokens = self.task.step_loss(state)
        self.optimizer.zero_grad(set_to_none=True)
        finite, step_loss = distributed.agree_on_loss(self.world, loss)  # skip together; mean over all ranks
        scaled = finite
        grad_norm = None
        if finite:
            grad_norm = self.backward_and_clip(loss)
            # under fp16 an overflowing gradient is routine: the scaler skips the step and lowers its scale
            finite = self.scaler.is_enabled() or bool(torch.isfinite(grad_norm))
        state.chunk += 1
        state.step += 1
        if finite:
            self.scaler.step(self.optimizer)
            state.bad_streak = 0
            state.window_loss += step_loss
            state.window_steps += 1
        else:
            self.skip_step()
        self.task.end_step(finite)
        if scaled:
            self.scaler.update()  # no-op unless fp16: lowers the loss scale after an overflow
        return Step(lr, step_loss, n_tokens * self.world.size, finite, grad_norm)  # every rank reads as many

    def set_learning_rate(self) -> float:
        """Put the schedule's learning rate for the next step (`optim.learning_rate`) on every parameter group."""
        lr = learning_rate(self.cfg, self.state, self.total_steps, self.time_progress(), self.planned_steps())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def time_progress(self) -> float | None:
        """Elapsed fraction of the time this run will have had when the session's --max-time runs out."""
        if self.cfg.max_time is None:
            return None
        return self.state.elapsed / (self.elapsed_before + self.cfg.max_time * 60)

    def planned_steps(self) -> int | None:
        """The steps this run will have when it stops: the step budget, or under --max-time (when sooner) the steps
        done plus those the time left allows at this session's mean step time; None before that is known."""
        planned = self.total_steps
        done = self.state.step - self.steps_before
        if self.cfg.max_time is not None and done > 0:
            left = self.cfg.max_time * 60 - (time.perf_counter() - self.session_start) - self.reserve()
            by_time = self.state.step + max(int(left / (self.train_seconds / done)), 0)
            planned = by_time if planned is None else min(planned, by_time)
        return planned

    def backward_and_clip(self, loss: torch.Tensor) -> torch.Tensor:
        """Compute g = ∇L and clip it: g ← g · min(1, c / (‖g‖ + 10⁻⁶)), c = --clip; returns ‖g‖ before clipping.

        ‖g‖ is the 2-norm over all parameters together. Under fp16 the loss is scaled up before the
        backward pass (so small gradients do not underflow) and g is unscaled before its norm is taken.
        """
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        return torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip)

    def skip_step(self) -> None:
        """The non-finite rule: drop the step's gradients; after --max-bad-steps skipped in a row, roll back."""
        state, cfg = self.state, self.cfg
        self.optimizer.zero_grad(set_to_none=True)
        state.skipped_steps += 1
        state.bad_streak += 1
        self.reporter.message(f"step {state.step}: non-finite loss or gradient, step skipped")
        if state.bad_streak >= cfg.max_bad_steps:
            restored = roll_back(self.run_dir, self.task.model, self.optimizer, state, self.device)
            self.reporter.message(
                f"{cfg.max_bad_steps} non-finite steps in a row: restored the weights and optimiser "
                f"of the checkpoint at step {restored}, learning rate scaled to x{state.lr_scale:g}"
            )

    def count(self, step: Step) -> None:
        """Add the step's tokens and gradient norm to the run's and the window's counts, its time to the step
        clock; bring `state.elapsed` up to now."""
        self.state.tokens_seen += step.tokens
        self.grads.add(step.grad_norm, self.cfg.clip)
        self.window_tokens += step.tokens
        now = time.perf_counter()
        self.step_seconds, self.last_tick = now - self.last_tick, now
        self.train_seconds += self.step_seconds
        self.tick()

    # -- the logging window -----------------------------------------------------------------------

    def window_due(self) -> bool:
        """Whether the window (of at least one finite step) ends here: every --log-every steps and at an epoch's end."""
        state = self.state
        at_epoch_end = state.chunk == self.task.batches_per_epoch
        return state.window_steps > 0 and (state.step % self.cfg.log_every == 0 or at_epoch_end)

    def log_window(self, lr: float) -> None:
        """Record the window's mean training loss over its finite steps, its gradient norms and speed; start a new window."""
        state = self.state
        seconds = time.perf_counter() - self.window_start
        record = {
            "step": state.step,
            "epoch": state.epoch + state.chunk / self.task.batches_per_epoch,
            "train_loss": state.window_loss / state.window_steps,
            "lr": lr,
            "tokens_per_second": self.window_tokens / max(seconds, 1e-9),
            "elapsed": state.elapsed,
            **self.grads.close_window(state),  # grad_norm_mean, grad_norm_max, clipped (share of steps)
        }
        self.append_metrics(record)
        self.reporter.step(record)
        state.window_loss, state.window_steps = 0.0, 0
        self.window_tokens, self.window_start = 0, time.perf_counter()

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Add a record to metrics.jsonl (rank 0 alone writes the run directory)."""
        if self.world.is_main:
            rundir.append_metrics(self.run_dir, record)

    # -- evaluation -------------------------------------------------------------------------------

    def evaluation_due(self) -> bool:
        """Whether to evaluate after this step: every --eval-every steps; without it, every 200 steps (500 for
        seq2seq), or a tenth of the run when that is sooner (a tenth of the step budget, or of --max-time)."""
        cfg, step = self.cfg, self.state.step
        if cfg.eval_every is not None:
            return step % cfg.eval_every == 0
        every = type(cfg).AUTO_EVAL_EVERY
        if self.total_steps is not None:
            every = min(every, max(1, math.ceil(self.total_steps / 10)))
        return step % every == 0 or self.tenth_of_time_passed

    def evaluate(self, scheduled: bool = True) -> None:
        """Validation loss; a new best (finite and lower) is saved to model.safetensors; record it.

        Only evaluations on the --eval-every cadence (`scheduled`) feed the plateau schedule, so the
        extra evaluation when a run stops changes nothing for the steps after a resume.
        """
        state = self.state
        began = time.perf_counter()
        val_loss = self.task.evaluate()
        self.eval_seconds = self.pause(began)
        self.last_eval_time = time.perf_counter()
        self.tenth_of_time_passed = False
        self.tick()
        state.last_val_loss = val_loss
        self.last_eval_step = state.step
        improved = math.isfinite(val_loss) and (state.best_val_loss is None or val_loss < state.best_val_loss)
        if improved:
            state.best_val_loss = val_loss
            self.save_best_weights()
        lowered = scheduled and update_plateau(self.cfg, state, val_loss)
        record = {
            "step": state.step,
            "epoch": state.epoch,
            "val_loss": val_loss,
            "best": improved,
            "elapsed": state.elapsed,
            **getattr(self.task, "evaluation_details", dict)(),  # a task's own figures (a lesson's share solved)
        }
        self.append_metrics(record)
        self.reporter.evaluate(record)
        if lowered:
            self.reporter.message(f"validation loss stalled: learning rate scaled to x{state.lr_scale:g}")

    def save_best_weights(self) -> None:
        """Write the weights to model.safetensors, with the step and the tokenizer's hash (rank 0)."""
        if self.world.is_main:
            metadata = {"step": self.state.step, "tokenizer": self.tokenizer_hash}
            rundir.save_tensors(self.run_dir / rundir.WEIGHTS_FILE, self.task.model.state_dict(), metadata)

    # -- saving -----------------------------------------------------------------------------------

    def save_due(self) -> bool:
        """Whether to save after this step: every --save-every steps, or --save-every-minutes since the last save."""
        minutes = self.cfg.save_every_minutes
        return self.state.step % self.cfg.save_every == 0 or (
            minutes is not None and time.perf_counter() - self.last_save_time >= minutes * 60
        )

    def save(self) -> None:
        """Write resume.safetensors (and a numbered checkpoint with --keep-checkpoints).

        Weights that are not finite are not saved: the previous checkpoint stays the one to resume from.
        """
        model = self.task.model
        began = time.perf_counter()
        self.tick()  # the resume file's time trained: up to this save
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            self.reporter.message(
                f"step {self.state.step}: weights are not finite; keeping the previous checkpoint"
            )
            return
        carried = self.task.carried_tensors()  # a collective under torchrun
        self.grads.store(self.state)
        if self.world.is_main:
            save_resume_state(
                self.run_dir, model, self.optimizer, self.state, carried, self.data_hash, self.tokenizer_hash
            )
            if self.cfg.keep_checkpoints:
                keep_checkpoint(self.run_dir, self.state.step, self.state.last_val_loss, self.cfg.keep_checkpoints)
        self.last_save_time = time.perf_counter()
        self.save_seconds = self.pause(began)

    # -- the end ----------------------------------------------------------------------------------

    def result(self, stop_reason: str) -> TrainResult:
        """What this session achieved: its wall-clock time (up to its last save, as `state.elapsed` counts it)
        and what it was spent on; its speed over its own tokens and steps."""
        state = self.state
        seconds = state.elapsed - self.elapsed_before
        return TrainResult(
            run_dir=self.run_dir,
            steps=state.step,
            epochs=state.epoch + state.chunk / self.task.batches_per_epoch,
            best_val_loss=state.best_val_loss,
            last_val_loss=state.last_val_loss,
            tokens_per_second=(state.tokens_seen - self.tokens_before) / max(self.train_seconds, 1e-9),
            seconds=seconds,
            train_seconds=self.train_seconds,
            setup_seconds=self.loop_start - self.session_start,
            stop_reason=stop_reason,
            skipped_steps=state.skipped_steps,
            clipped_share=self.grads.clipped_share(),
        )


def roll_back(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    device: torch.device,
) -> int:
    """After repeated non-finite steps: reload the last saved weights, halve the learning rate; returns its step."""
    saved = load_resume_state(run_dir, model, optimizer, device)
    state.lr_scale *= 0.5
    state.bad_streak = 0
    state.rollbacks += 1
    return saved.state.step
