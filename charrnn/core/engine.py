"""The training engine both models share: setup, the step loop, evaluation, checkpoints and resume.

A model plugs in through two small objects:
  a `Recipe`  turns a run config into data, tokenizers and a `Task` (the language model's is in
              `charrnn.lm.training`, seq2seq's in `charrnn.seq2seq.training`);
  a `Task`    computes the loss of batch i of epoch e, evaluates, and names the tensors it carries
              from one step to the next (the LM's hidden state under truncated BPTT).
Everything else is written once, here: device/threads/seed, fresh start or resume (with the data
and tokenizer checks), the optimiser, the learning-rate schedule, mixed precision, gradient-norm
clipping, non-finite steps and rollback, metrics, the best checkpoint, resumable saves and stopping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from charrnn.core import distributed, rundir, runwriter
from charrnn.core import resume as resume_run
from charrnn.core.checkpoints import keep_checkpoint
from charrnn.core.errors import CharRNNError
from charrnn.core.optim import grad_scaler, learning_rate, make_optimizer, update_plateau
from charrnn.core.precision import PrecisionChoice, ProbeShape, resolve_precision
from charrnn.core.resume import load_resume_state, save_resume_state
from charrnn.core.runtime import autocast, check_autocast, resolve_device, seed_everything, set_threads
from charrnn.core.state import Reporter, SilentReporter, TrainResult, TrainState

World = distributed.World


class Task(Protocol):
    """The model-specific half of training; `run_training_loop` does the rest."""

    model: torch.nn.Module
    batches_per_epoch: int

    def start_epoch(self) -> None:
        """Called before the first batch of an epoch (not when resuming in the middle of one)."""

    def step_loss(self, state: TrainState) -> tuple[torch.Tensor, int]:
        """Loss of batch `state.chunk` of epoch `state.epoch`, and how many target tokens it has."""

    def end_step(self, finite: bool) -> None:
        """Called after every step; `finite` is False when the step was skipped."""

    def evaluate(self) -> float:
        """Mean validation loss per token."""

    def carried_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors a resumed run must start the next batch from (saved as task.* in the resume file)."""

    def restore_carried(self, tensors: dict[str, torch.Tensor]) -> None:
        """Take back what `carried_tensors` returned, on resume."""


@dataclass
class Prepared:
    """What a recipe built for one training call."""

    task: Task
    data_hash: str  # a hash of the encoded training + validation data, checked on resume
    info: dict[str, Any] = field(default_factory=dict)  # shown at the start: level, vocab_size, tokens


class Recipe(Protocol):
    """How to set up one kind of model for the engine."""

    kind: str  # "lm" or "seq2seq"

    def read_config(self, run_dir: Path) -> Any:
        """The saved config of a run of this kind."""

    def read_data(self, config: Any, reporter: Reporter) -> Any:
        """Read the raw training and validation data named in the config."""

    def build_tokenizers(self, config: Any, data: Any) -> Any:
        """A fresh run's tokenizer(s), with their vocabulary sizes filled into the config."""

    def read_tokenizers(self, run_dir: Path) -> Any:
        """A resumed run's tokenizer(s)."""

    def write_tokenizers(self, run_dir: Path, tokenizers: Any) -> None:
        """Save the tokenizer(s) into a fresh run directory."""

    def tokenizer_hash(self, tokenizers: Any) -> str:
        """A short hash of the tokenizer(s), stored with every checkpoint."""

    def prepare(
        self, config: Any, tokenizers: Any, data: Any, device: torch.device, reporter: Reporter
    ) -> Prepared:
        """Encode and batch the data, build the model on `device` and its task."""


def train(
    recipe: Recipe,
    config: Any,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train (or resume) the model that `recipe` sets up from `config`, writing the run to `run_dir`.

    On resume `config` must be the run's saved config, changed only where a setting may change
    mid-run (`charrnn.core.resume`): anything else is refused before training starts. Under
    torchrun each process calls this; rank 0 alone holds the run's lock and writes its files.
    """
    config.validate()
    reporter = reporter or SilentReporter()
    should_stop = should_stop or (lambda: False)
    world, device = distributed.join(resolve_device(config.training.device))  # one of several under torchrun
    try:
        if not world.is_main:
            return _train(
                recipe, config, Path(run_dir), None, resume, overwrite, reporter, should_stop, world, device
            )
        with runwriter.hold(run_dir, create=not resume) as writer:  # one writer per run directory
            return _train(
                recipe, config, writer.run_dir, writer, resume, overwrite, reporter, should_stop, world, device
            )
    finally:
        distributed.leave(world)


def _train(
    recipe: Recipe,
    config: Any,
    run_dir: Path,
    writer: runwriter.RunWriter | None,
    resume: bool,
    overwrite: bool,
    reporter: Reporter,
    should_stop: Callable[[], bool],
    world: World,
    device: torch.device,
) -> TrainResult:
    """`train` once the process (and its place among distributed processes) is set up."""
    resumed = resume_run.start(run_dir, recipe.read_config(run_dir), config) if resume else None
    if resumed is not None:
        config = resumed.config  # the saved config, with the settings given again
    cfg = config.training
    if not world.is_main:
        reporter = SilentReporter()  # rank 0 alone reports and writes the run directory
    check_autocast(device, cfg.precision, config.model.cell)
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    data = recipe.read_data(config, reporter)  # first: unreadable data leaves no --out behind
    replacing = False
    if not resume and world.is_main:
        replacing = rundir.check_run_dir(run_dir, overwrite)  # refuse an occupied --out before the slow part
    with distributed.main_first(world):  # rank 0 builds the token cache, the others then read it
        tokenizers = recipe.read_tokenizers(run_dir) if resume else recipe.build_tokenizers(config, data)
        prepared = recipe.prepare(config, tokenizers, data, device, reporter)
    task, model = prepared.task, prepared.task.model
    if world.active:
        if not hasattr(task, "distribute"):
            raise CharRNNError(
                f"Distributed training is not available for {recipe.kind} models yet; use one process."
            )
        task.distribute(world)
    precision = choose_precision(config, resumed is not None, device)
    cfg.resolved_precision = precision.precision
    optimizer = make_optimizer(model, cfg)
    tokenizer_hash = recipe.tokenizer_hash(tokenizers)
    if resumed is not None:
        state = resumed.restore(
            model, optimizer, task, device, prepared.data_hash, tokenizer_hash, writes=world.is_main
        )
    else:
        state = TrainState()
        carried = task.carried_tensors()  # under torchrun, a collective: every rank takes part
        if writer is not None:  # rank 0; --overwrite: the old run stays until these are written
            with writer.new_run(replacing) as first:
                rundir.write_config(first, config)
                recipe.write_tokenizers(first, tokenizers)
                save_resume_state(first, model, optimizer, state, carried, prepared.data_hash, tokenizer_hash)

    epochs = cfg.epoch_limit
    total_steps = None if epochs is None else epochs * task.batches_per_epoch
    if cfg.max_steps is not None:
        total_steps = cfg.max_steps if total_steps is None else min(total_steps, cfg.max_steps)
    reporter.start(
        {
            "run_dir": str(run_dir),
            **prepared.info,
            "parameters": sum(p.numel() for p in model.parameters()),
            "chunks_per_epoch": task.batches_per_epoch,
            "total_steps": total_steps,
            "start_step": state.step,
            "max_time": cfg.max_time,
            "device": str(device),
            "precision": cfg.resolved_precision,
            "precision_reason": precision.reason,
            "resumed": resume,
            "changes": resumed.changes if resumed is not None else [],
            "processes": world.size,
        }
    )
    result = run_training_loop(
        task,
        optimizer,
        cfg,
        state,
        run_dir=run_dir,
        reporter=reporter,
        should_stop=should_stop,
        data_hash=prepared.data_hash,
        tokenizer_hash=tokenizer_hash,
        total_steps=total_steps,
        world=world,
    )
    result.level = prepared.info.get("level", "char")
    return result


def choose_precision(config: Any, resuming: bool, device: torch.device) -> PrecisionChoice:
    """The precision this session trains in: a resumed auto run keeps what auto chose when it started."""
    cfg = config.training
    if resuming and cfg.precision == "auto" and cfg.resolved_precision:
        return PrecisionChoice(cfg.resolved_precision, "auto: as chosen when the run started")
    model = config.model
    shape = ProbeShape(
        model.cell,
        model.embed,
        model.hidden,
        model.layers,
        model.output_size or 256,
        min(cfg.batch_size, 64),
        min(getattr(cfg, "bptt", 32), 64),
    )
    return resolve_precision(cfg.precision, device, shape)


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
) -> TrainResult:
    """Step until a stopping rule fires: schedule, clipping, non-finite steps, metrics, evaluation, saves."""
    model = task.model
    device = next(model.parameters()).device

    def checkpoint_now() -> None:
        nonlocal last_save_time
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            reporter.message(f"step {state.step}: weights are not finite; keeping the previous checkpoint")
            return
        carried = task.carried_tensors()  # a collective under torchrun
        if world.is_main:
            save_resume_state(run_dir, model, optimizer, state, carried, data_hash, tokenizer_hash)
            if cfg.keep_checkpoints:
                keep_checkpoint(run_dir, state.step, state.last_val_loss, cfg.keep_checkpoints)
        last_save_time = time.perf_counter()

    def run_evaluation(scheduled: bool = True) -> None:
        """Evaluate; only evaluations on the eval cadence feed the plateau schedule (so a stop changes nothing)."""
        val_loss = task.evaluate()
        state.last_val_loss = val_loss
        improved = math.isfinite(val_loss) and (state.best_val_loss is None or val_loss < state.best_val_loss)
        if improved:
            state.best_val_loss = val_loss
        if improved and world.is_main:
            rundir.save_tensors(
                run_dir / rundir.WEIGHTS_FILE,
                model.state_dict(),
                {"step": state.step, "tokenizer": tokenizer_hash},
            )
        lowered = scheduled and update_plateau(cfg, state, val_loss)
        record = {
            "step": state.step,
            "epoch": state.epoch,
            "val_loss": val_loss,
            "best": improved,
            "elapsed": state.elapsed,
        }
        if world.is_main:
            rundir.append_metrics(run_dir, record)
        reporter.evaluate(record)
        if lowered:
            reporter.message(f"validation loss stalled: learning rate scaled to x{state.lr_scale:g}")

    def time_progress(elapsed: float) -> float | None:
        """Elapsed fraction of the time this run will have had when the session's --max-time runs out."""
        if cfg.max_time is None:
            return None
        return elapsed / (elapsed_before + cfg.max_time * 60)

    model.train()
    session_start = time.perf_counter()
    elapsed_before, tokens_before = state.elapsed, state.tokens_seen
    window_tokens, window_start = 0, time.perf_counter()
    last_save_time = time.perf_counter()
    stop_reason = "epochs"
    last_eval_step = -1
    params = [p for p in model.parameters() if p.requires_grad]
    scaler = grad_scaler(device, cfg.resolved_precision == "fp16")  # fp16 needs loss scaling; bf16 and fp32 do not
    batches_per_epoch = task.batches_per_epoch
    epoch_limit = cfg.epoch_limit

    while epoch_limit is None or state.epoch < epoch_limit:
        if state.chunk == 0:
            task.start_epoch()
        while state.chunk < batches_per_epoch:
            if cfg.max_steps is not None and state.step >= cfg.max_steps:
                stop_reason = "max_steps"
                break
            out_of_time = cfg.max_time is not None and time.perf_counter() - session_start >= cfg.max_time * 60
            interrupted = should_stop()
            out_of_time, interrupted = distributed.any_of(
                world, out_of_time, interrupted
            )  # all ranks stop together
            if out_of_time:
                stop_reason = "max_time"
                break
            if interrupted:
                stop_reason = "interrupted"
                break
            lr = learning_rate(cfg, state, total_steps, time_progress(state.elapsed))
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(device, cfg.resolved_precision):
                loss, n_tokens = task.step_loss(state)
            optimizer.zero_grad(set_to_none=True)
            finite, step_loss = distributed.agree_on_loss(world, loss)  # skip together; mean over all ranks
            scaled = finite
            if finite:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
                # under fp16 an overflowing gradient is routine: the scaler skips the step and lowers its scale
                finite = scaler.is_enabled() or bool(torch.isfinite(grad_norm))
            state.chunk += 1
            state.step += 1
            if finite:
                scaler.step(optimizer)
                state.bad_streak = 0
                state.window_loss += step_loss
                state.window_steps += 1
            else:
                optimizer.zero_grad(set_to_none=True)
                state.skipped_steps += 1
                state.bad_streak += 1
                reporter.message(f"step {state.step}: non-finite loss or gradient, step skipped")
                if state.bad_streak >= cfg.max_bad_steps:
                    restored = _roll_back(run_dir, model, optimizer, state, device)
                    reporter.message(
                        f"{cfg.max_bad_steps} non-finite steps in a row: restored the weights and optimiser "
                        f"of the checkpoint at step {restored}, learning rate scaled to x{state.lr_scale:g}"
                    )
            task.end_step(finite)
            if scaled:
                scaler.update()  # no-op unless fp16: lowers the loss scale after an overflow
            n_tokens *= world.size  # every rank reads as many
            state.tokens_seen += n_tokens
            window_tokens += n_tokens
            state.elapsed = elapsed_before + time.perf_counter() - session_start

            if state.window_steps and (state.step % cfg.log_every == 0 or state.chunk == batches_per_epoch):
                seconds = time.perf_counter() - window_start
                record = {
                    "step": state.step,
                    "epoch": state.epoch + state.chunk / batches_per_epoch,
                    "train_loss": state.window_loss / state.window_steps,
                    "lr": lr,
                    "tokens_per_second": window_tokens / max(seconds, 1e-9),
                    "elapsed": state.elapsed,
                }
                if world.is_main:
                    rundir.append_metrics(run_dir, record)
                reporter.step(record)
                state.window_loss, state.window_steps = 0.0, 0
                window_tokens, window_start = 0, time.perf_counter()
            if state.step % cfg.eval_every == 0:
                run_evaluation()
                last_eval_step = state.step
            minutes = cfg.save_every_minutes
            if state.step % cfg.save_every == 0 or (
                minutes is not None and time.perf_counter() - last_save_time >= minutes * 60
            ):
                checkpoint_now()
        else:
            state.epoch += 1
            state.chunk = 0
            continue
        break

    checkpoint_now()  # before the evaluation: a second Ctrl-C during it loses no step
    if last_eval_step != state.step:
        run_evaluation(scheduled=False)
        checkpoint_now()  # again, with the evaluation's best/last validation loss
    seconds = time.perf_counter() - session_start
    return TrainResult(
        run_dir=run_dir,
        steps=state.step,
        epochs=state.epoch + state.chunk / batches_per_epoch,
        best_val_loss=state.best_val_loss,
        last_val_loss=state.last_val_loss,
        tokens_per_second=(state.tokens_seen - tokens_before) / max(seconds, 1e-9),
        seconds=seconds,
        stop_reason=stop_reason,
        skipped_steps=state.skipped_steps,
    )


def _roll_back(
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
