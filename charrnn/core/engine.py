"""The training engine every model kind shares: setting a run up, fresh or resumed, for the loop.

A model plugs in through two small objects:
  a `Recipe`  turns a run config into data, tokenizers and a `Task` (the language model's is in
              `charrnn.lm.training`, seq2seq's in `charrnn.seq2seq.training`);
  a `Task`    computes the loss of batch i of epoch e, evaluates, and names the tensors it carries
              from one step to the next (the LM's hidden state under truncated BPTT).
Everything else is written once: here device/threads/seed, the run directory's lock, fresh start or
resume (`charrnn.core.resume.start`, with the data and tokenizer checks), precision and the
optimiser; in `charrnn.core.training_loop` the steps themselves (schedule, mixed precision,
gradient-norm clipping, non-finite steps and rollback, metrics, the best checkpoint, resumable saves
and stopping).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from charrnn.core import distributed, rundir, runwriter
from charrnn.core import resume as resume_run
from charrnn.core.errors import CharRNNError
from charrnn.core.optim import learning_rate, make_optimizer
from charrnn.core.precision import PrecisionChoice, ProbeShape, resolve_precision
from charrnn.core.resume import save_resume_state
from charrnn.core.runtime import check_autocast, resolve_device, seed_everything, set_threads
from charrnn.core.state import Reporter, SilentReporter, TrainResult, TrainState, clock
from charrnn.core.task import Task
from charrnn.core.training_loop import run_training_loop

if TYPE_CHECKING:
    from charrnn.core.tokenizers import Tokenizer

World = distributed.World


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


class OneTokenizer:
    """The tokenizer part of a `Recipe` whose runs have one tokenizer (the language model, the labelled kinds)."""

    def read_tokenizers(self, run_dir: Path) -> Tokenizer:
        return rundir.read_tokenizer(run_dir)

    def write_tokenizers(self, run_dir: Path, tokenizers: Tokenizer) -> None:
        rundir.write_tokenizer(run_dir, tokenizers)

    def tokenizer_hash(self, tokenizers: Tokenizer) -> str:
        return rundir.tokenizers_fingerprint(tokenizers)


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
    --max-time counts from here: reading the data and building the model are part of the session.
    """
    started = time.perf_counter()
    config.validate()
    reporter = reporter or SilentReporter()
    should_stop = should_stop or (lambda: False)
    world, device = distributed.join(resolve_device(config.training.device))  # one of several under torchrun
    try:
        if not world.is_main:
            return _train(
                recipe,
                config,
                Path(run_dir),
                None,
                resume,
                overwrite,
                reporter,
                should_stop,
                world,
                device,
                started,
            )
        with runwriter.hold(run_dir, create=not resume) as writer:  # one writer per run directory
            return _train(
                recipe,
                config,
                writer.run_dir,
                writer,
                resume,
                overwrite,
                reporter,
                should_stop,
                world,
                device,
                started,
            )
    except Exception as exc:
        if world.active and not isinstance(exc, CharRNNError) and distributed.is_lost_peer(exc):
            raise distributed.lost_peer_error(world, exc, run_dir) from None
        raise
    finally:
        with contextlib.suppress(Exception):  # the group may be broken already (a process died)
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
    started: float,
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
    cfg.resolved_device = str(device)
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
            "setup_seconds": time.perf_counter() - started,  # already spent of --max-time
            "device": str(device),
            "precision": cfg.resolved_precision,
            "precision_reason": precision.reason,
            "resumed": resume,
            "changes": resumed.changes if resumed is not None else [],
            "plan": resume_plan(cfg, state, total_steps, run_dir) if resumed is not None and world.is_main else [],
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
        started=started,
    )
    result.level = prepared.info.get("level", "char")
    return result


def resume_plan(cfg: Any, state: TrainState, total_steps: int | None, run_dir: Path) -> list[str]:
    """What a resumed session will do, in words: how much longer it trains, and where the learning rate goes.

    --max-time counts the session, so `--max-time 2.5` on resume trains 2:30 more; the cosine schedule
    then spreads over the time trained before plus that, so its learning rate may jump back up.
    """
    plan = []
    if cfg.max_time is not None:
        budget = cfg.max_time * 60
        plan.append(f"training {clock(budget)} more ({clock(state.elapsed + budget)} in all)")
    if total_steps is not None and total_steps > state.step:
        until = f"to step {total_steps:,} ({total_steps - state.step:,} more)"
        plan.append(f"or {until}, whichever comes first" if plan else f"training {until}")
    plan = [" ".join(plan)] if plan else []
    if cfg.schedule == "cosine":
        before = [r["lr"] for r in rundir.read_metrics(run_dir) if "lr" in r and r.get("step", 0) <= state.step]
        budget = cfg.max_time * 60 if cfg.max_time is not None else None
        progress = state.elapsed / (state.elapsed + budget) if budget else None
        after = learning_rate(cfg, state, total_steps, progress)
        if before and abs(after - before[-1]) > 0.01 * before[-1]:
            how = "stretched over" if after > before[-1] else "fitted to"
            plan.append(
                f"the cosine schedule is {how} the new total: learning rate {before[-1]:.2g} → {after:.2g}"
            )
    return plan


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
