"""Language-model training: truncated BPTT over parallel streams, clipping, checkpoints, resume."""

from __future__ import annotations

import hashlib
import math
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from charrnn import FORMAT_VERSION, __version__
from charrnn import checkpoint as ckpt
from charrnn.config import RunConfig, TrainConfig
from charrnn.data import StreamBatches, encode_ids, read_corpus, split_train_val
from charrnn.errors import CharRNNError
from charrnn.model import LanguageModel, State, detach_state, state_from_tensors, state_tensors
from charrnn.runtime import autocast, resolve_device, seed_everything, set_threads
from charrnn.tokenizers import Tokenizer, build_tokenizer

C = TypeVar("C")  # a run config: RunConfig or Seq2SeqRunConfig

RUN_FILES = (
    ckpt.CONFIG_FILE,
    ckpt.WEIGHTS_FILE,
    ckpt.RESUME_FILE,
    ckpt.METRICS_FILE,
    "tokenizer.json",
    "tokenizer.model",
)


@dataclass
class TrainState:
    """Counters that, with the weights and RNG states, pin down where training is."""

    step: int = 0
    epoch: int = 0
    chunk: int = 0  # next chunk of the current epoch
    tokens_seen: int = 0
    elapsed: float = 0.0  # seconds of training over all sessions
    best_val_loss: float | None = None
    last_val_loss: float | None = None
    lr_scale: float = 1.0
    plateau_best: float | None = None
    plateau_bad: int = 0
    skipped_steps: int = 0
    bad_streak: int = 0
    rollbacks: int = 0
    window_loss: float = 0.0  # train losses summed since the last metrics record
    window_steps: int = 0


@dataclass
class TrainResult:
    """What a call of `train_language_model` achieved."""

    run_dir: Path
    steps: int
    epochs: float
    best_val_loss: float | None
    last_val_loss: float | None
    tokens_per_second: float
    seconds: float
    stop_reason: str
    skipped_steps: int = 0


class Reporter(Protocol):
    """Receives progress; the CLI shows it with rich, tests ignore it."""

    def start(self, info: dict[str, Any]) -> None: ...
    def step(self, record: dict[str, Any]) -> None: ...
    def evaluate(self, record: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...


class SilentReporter:
    """A reporter that shows nothing."""

    def start(self, info: dict[str, Any]) -> None:
        pass

    def step(self, record: dict[str, Any]) -> None:
        pass

    def evaluate(self, record: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        pass


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Create `run_dir`, refusing to clobber another run unless `overwrite`."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise CharRNNError(f"--out {run_dir} is a file; choose a directory.")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not (run_dir / ckpt.CONFIG_FILE).is_file():
            raise CharRNNError(f"--out {run_dir} exists and is not a charrnn run directory; choose another --out.")
        if not overwrite:
            raise CharRNNError(
                f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to replace it."
            )
        ckpt.remove_temp_files(run_dir)
        for name in sorted(RUN_FILES, key=lambda n: n == ckpt.CONFIG_FILE):  # config.json last: a kill
            (run_dir / name).unlink(missing_ok=True)  # part-way still leaves a run that --overwrite accepts
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CharRNNError(f"Cannot create --out {run_dir}: {exc.strerror}.") from None
    if not os.access(run_dir, os.W_OK):
        raise CharRNNError(f"--out {run_dir} is not writable; choose a directory you can write to.")


RESUME_OVERRIDES = ("epochs", "max_steps", "max_time", "device", "threads", "precision", "compile")


def resumed_config(saved: C, requested: C, run_dir: Path) -> C:
    """The saved config of a run being resumed, with the requested stopping rules and device settings."""
    for name in RESUME_OVERRIDES:
        setattr(saved.training, name, getattr(requested.training, name))
    if not (run_dir / ckpt.RESUME_FILE).is_file():
        raise CharRNNError(
            f"{run_dir} has no {ckpt.RESUME_FILE}; it cannot be resumed "
            "(start it again with the same --out and --overwrite)."
        )
    return saved


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named in the config."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr)
    # The fused kernel: one pass over all parameters instead of a Python loop per tensor
    # (2x512 LSTM on one CPU thread: 16 ms instead of 90 ms per step).
    fused_devices = ("cpu", "cuda") if _torch_at_least(2, 4) else ("cuda",)  # fused CPU Adam: torch 2.4+
    fused = (
        {"fused": True} if all(p.device.type in fused_devices and p.is_floating_point() for p in params) else {}
    )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, **fused)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)


def _torch_at_least(major: int, minor: int) -> bool:
    """Whether the installed torch is at least version major.minor."""
    found = re.match(r"(\d+)\.(\d+)", torch.__version__)
    return found is not None and (int(found[1]), int(found[2])) >= (major, minor)


def grad_scaler(device: torch.device, enabled: bool):
    """A loss scaler for fp16 (a no-op when not enabled), on torch versions before and after torch.amp's."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")


def learning_rate(
    cfg: TrainConfig, state: TrainState, total_steps: int, time_progress: float | None = None
) -> float:
    """Learning rate for the next step: warmup, then cosine decay or the plateau scale.

    The cosine follows whichever budget runs out first: steps, or (when `time_progress`,
    the elapsed fraction of a --max-time budget, is given) wall-clock time.
    """
    lr = cfg.lr
    if cfg.schedule == "cosine":
        progress = min(max(state.step / max(total_steps, 1), time_progress or 0.0), 1.0)
        floor = max(cfg.min_lr, cfg.min_lr_fraction * cfg.lr)
        lr = floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    lr *= state.lr_scale
    if cfg.schedule != "constant":
        lr = max(lr, cfg.min_lr)
    if cfg.warmup_steps > 0:  # after the floor, so warmup ramps up from (almost) zero
        lr *= min(1.0, (state.step + 1) / cfg.warmup_steps)
    return lr


def update_plateau(cfg: TrainConfig, state: TrainState, val_loss: float) -> bool:
    """Track validation progress; returns True when the learning rate was just lowered."""
    if cfg.schedule != "plateau":
        return False
    if state.plateau_best is None or val_loss < state.plateau_best - 1e-4:
        state.plateau_best, state.plateau_bad = val_loss, 0
        return False
    state.plateau_bad += 1
    if state.plateau_bad > cfg.plateau_patience:
        state.lr_scale *= cfg.plateau_factor
        state.plateau_bad = 0
        return True
    return False


@torch.inference_mode()
def evaluate(
    model: LanguageModel, batches: StreamBatches, device: torch.device, max_tokens: int | None = None
) -> float:
    """Mean negative log-likelihood per token over (a prefix of) `batches`, state carried across chunks."""
    was_training = model.training
    model.eval()
    state = model.initial_state(batches.streams.shape[0], device)
    total, count = 0.0, 0
    for index in range(len(batches)):
        x, y = batches.chunk(index, device)
        out, state = model(x, state)
        total += float(model.loss(out, y)) * y.numel()
        count += y.numel()
        if max_tokens is not None and count >= max_tokens:
            break
    model.train(was_training)
    return total / max(count, 1)


def fingerprint(ids: torch.Tensor) -> str:
    """A short hash of a token stream, to check that a resumed run reads the same data."""
    return hashlib.sha256(ids.numpy().tobytes()).hexdigest()[:16]


def save_resume_state(
    run_dir: Path,
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    hidden: State,
    data_hash: str,
    tokenizer_hash: str | None = None,
) -> None:
    """Write resume.safetensors: everything needed to continue bit for bit."""
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in optim_state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    for i, t in enumerate(state_tensors(hidden)):
        tensors[f"hidden.{i}"] = t
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    metadata: dict[str, Any] = {
        "train_state": asdict(state),
        "optim_param_groups": optim_state["param_groups"],
        "optim_scalars": scalars,
        "python_rng": _python_rng_to_json(random.getstate()),
        "data_hash": data_hash,
        "tokenizer": tokenizer_hash,
        "format_version": FORMAT_VERSION,
        "charrnn_version": __version__,
    }
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        tensors["rng.numpy"] = torch.from_numpy(keys.astype("int64"))
        metadata["numpy_rng"] = [kind, int(pos), int(has_gauss), float(cached)]
    except ImportError:
        pass
    ckpt.save_tensors(run_dir / ckpt.RESUME_FILE, tensors, metadata)


def load_resume_state(
    run_dir: Path,
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    tokenizer: Tokenizer | None = None,
    tokenizer_hash: str | None = None,
) -> tuple[TrainState, State | None, str, dict[str, torch.Tensor]]:
    """Restore weights and optimiser from resume.safetensors; returns (state, hidden, data hash, rng tensors)."""
    path = run_dir / ckpt.RESUME_FILE
    tensors, meta = ckpt.load_tensors(path)
    version = meta.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise CharRNNError(
            f"{path} has run format version {version}, this charrnn reads version {FORMAT_VERSION}; "
            f"resume it with the charrnn version that wrote it ({meta.get('charrnn_version', 'unknown')})."
        )
    try:
        model_tensors = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        if tokenizer is not None:
            ckpt.check_tokenizer_matches(tokenizer, model_tensors, meta, path)
        if tokenizer_hash is not None and meta.get("tokenizer") not in (None, tokenizer_hash):
            raise CharRNNError(
                f"The tokenizer files in {run_dir} are not the ones {path.name} was trained with; "
                "restore the run's own tokenizer files."
            )
        ckpt.check_weights(model, model_tensors, path)
        model.load_state_dict(model_tensors)
        optim_state: dict[str, Any] = {"state": {}, "param_groups": meta["optim_param_groups"]}
        for name, value in tensors.items():
            if name.startswith("optim."):
                _, index, key = name.split(".", 2)
                optim_state["state"].setdefault(int(index), {})[key] = value
        for index, entry in meta["optim_scalars"].items():
            optim_state["state"].setdefault(int(index), {}).update(entry)
        optimizer.load_state_dict(optim_state)
        hidden_list = [tensors[f"hidden.{i}"].to(device) for i in range(2) if f"hidden.{i}" in tensors]
        state = TrainState(**meta["train_state"])
        rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
        rng["python"] = meta["python_rng"]  # type: ignore[assignment]
        if "numpy_rng" in meta:
            rng["numpy_meta"] = meta["numpy_rng"]  # type: ignore[assignment]
        return state, (state_from_tensors(hidden_list) if hidden_list else None), meta["data_hash"], rng
    except (KeyError, ValueError, TypeError) as exc:
        raise CharRNNError(
            f"{path} is incomplete or from another charrnn version ({exc}); cannot resume."
        ) from None


def restore_rng(rng: dict[str, Any]) -> None:
    """Put Python's, torch's (and numpy's) generators back where a checkpoint left them."""
    random.setstate(_python_rng_from_json(rng["python"]))
    torch.set_rng_state(rng["rng.torch"])
    if "rng.cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["rng.cuda"])
    if "rng.numpy" in rng:
        try:
            import numpy as np

            kind, pos, has_gauss, cached = rng["numpy_meta"]
            np.random.set_state((kind, rng["rng.numpy"].numpy().astype("uint32"), pos, has_gauss, cached))
        except ImportError:
            pass


def _python_rng_to_json(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _python_rng_from_json(data: list) -> tuple:
    return (data[0], tuple(data[1]), data[2])


def _load_data(config: RunConfig, tokenizer: Tokenizer, text: str, val_text: str | None):
    ids = encode_ids(tokenizer, text)
    if val_text is not None:
        train_ids, val_ids = ids, encode_ids(tokenizer, val_text)
    else:
        train_ids, val_ids = split_train_val(ids, config.training.val_fraction)
    return train_ids, val_ids


class LoopTask(Protocol):
    """The model-specific half of a training loop; `run_training_loop` does the rest."""

    batches_per_epoch: int

    def start_epoch(self) -> None:
        """Called before the first batch of an epoch (not when resuming in the middle of one)."""

    def step_loss(self, state: TrainState) -> tuple[torch.Tensor, int]:
        """Loss of batch `state.chunk` of epoch `state.epoch`, and how many target tokens it has."""

    def end_step(self, finite: bool) -> None:
        """Called after every step; `finite` is False when the step was skipped."""

    def evaluate(self) -> float:
        """Mean validation loss per token."""

    def carried_state(self) -> State:
        """The recurrent state a resumed run must start the next batch from."""


def run_training_loop(
    task: LoopTask,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    state: TrainState,
    *,
    run_dir: Path,
    reporter: Reporter,
    should_stop: Callable[[], bool],
    data_hash: str,
    tokenizer_hash: str,
    total_steps: int,
) -> TrainResult:
    """Step until a stopping rule fires: schedule, clipping, non-finite steps, metrics, evaluation, saves."""
    device = next(model.parameters()).device

    def checkpoint_now() -> None:
        nonlocal last_save_time
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            reporter.message(f"step {state.step}: weights are not finite; keeping the previous checkpoint")
            return
        save_resume_state(run_dir, model, optimizer, state, task.carried_state(), data_hash, tokenizer_hash)
        last_save_time = time.perf_counter()

    def run_evaluation(scheduled: bool = True) -> None:
        """Evaluate; only evaluations on the eval cadence feed the plateau schedule (so a stop changes nothing)."""
        val_loss = task.evaluate()
        state.last_val_loss = val_loss
        improved = math.isfinite(val_loss) and (state.best_val_loss is None or val_loss < state.best_val_loss)
        if improved:
            state.best_val_loss = val_loss
            ckpt.save_tensors(
                run_dir / ckpt.WEIGHTS_FILE, model.state_dict(), {"step": state.step, "tokenizer": tokenizer_hash}
            )
        lowered = scheduled and update_plateau(cfg, state, val_loss)
        record = {
            "step": state.step,
            "epoch": state.epoch,
            "val_loss": val_loss,
            "best": improved,
            "elapsed": state.elapsed,
        }
        ckpt.append_metrics(run_dir, record)
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
    # fp16 needs loss scaling; bf16 and fp32 do not.
    scaler = grad_scaler(device, cfg.precision == "fp16")
    batches_per_epoch = task.batches_per_epoch

    while state.epoch < cfg.epochs:
        if state.chunk == 0:
            task.start_epoch()
        while state.chunk < batches_per_epoch:
            if cfg.max_steps is not None and state.step >= cfg.max_steps:
                stop_reason = "max_steps"
                break
            if cfg.max_time is not None and time.perf_counter() - session_start >= cfg.max_time * 60:
                stop_reason = "max_time"
                break
            if should_stop():
                stop_reason = "interrupted"
                break
            lr = learning_rate(cfg, state, total_steps, time_progress(state.elapsed))
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(device, cfg.precision):
                loss, n_tokens = task.step_loss(state)
            optimizer.zero_grad(set_to_none=True)
            finite = scaled = bool(torch.isfinite(loss))
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
                state.window_loss += loss.item()
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
                ckpt.append_metrics(run_dir, record)
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


class _LanguageModelTask:
    """Truncated BPTT over parallel streams: the hidden state carries from chunk to chunk, detached."""

    def __init__(
        self,
        model: LanguageModel,
        train_batches: StreamBatches,
        val_batches: StreamBatches,
        cfg: TrainConfig,
        device: torch.device,
        hidden: State | None,
    ) -> None:
        self.model, self.train_batches, self.val_batches = model, train_batches, val_batches
        self.cfg, self.device, self.hidden = cfg, device, hidden
        self.next_hidden: State | None = None
        self.batches_per_epoch = len(train_batches)
        self.forward = torch.compile(model) if cfg.compile else model  # compile wraps the forward pass only

    def start_epoch(self) -> None:
        self.hidden = None

    def step_loss(self, state: TrainState) -> tuple[torch.Tensor, int]:
        x, y = self.train_batches.chunk(state.chunk, self.device)
        if self.hidden is not None:
            self.hidden = detach_state(self.hidden)
        out, self.next_hidden = self.forward(x, self.hidden)
        return self.model.loss(out, y), y.numel()

    def end_step(self, finite: bool) -> None:
        self.hidden = self.next_hidden if finite else None  # a non-finite step may have poisoned the state

    def evaluate(self) -> float:
        return evaluate(self.model, self.val_batches, self.device, self.cfg.eval_tokens)

    def carried_state(self) -> State:
        if self.hidden is not None:
            return self.hidden
        return self.model.initial_state(self.cfg.batch_size, self.device)


def train_language_model(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] | None = None,
    encoding: str = "utf-8",
    errors: str = "strict",
) -> TrainResult:
    """Train (or resume) a language model on `config.corpus`, writing the run to `run_dir`.

    On resume, `config` supplies only the stopping rules (epochs, max steps, max time);
    everything else comes from the run directory.
    """
    reporter = reporter or SilentReporter()
    should_stop = should_stop or (lambda: False)
    run_dir = Path(run_dir)
    if resume:
        config = resumed_config(ckpt.read_config(run_dir), config, run_dir)
    config.validate()
    cfg = config.training
    device = resolve_device(cfg.device)
    set_threads(cfg.threads)
    seed_everything(cfg.seed)

    if resume and not Path(config.corpus).is_file():
        raise CharRNNError(
            f"The corpus this run was trained on, {config.corpus}, is missing; resume needs the same text there."
        )
    text = read_corpus(config.corpus, encoding, errors)
    val_text = read_corpus(config.val_corpus, encoding, errors) if config.val_corpus else None
    if resume:
        tokenizer = ckpt.read_tokenizer(run_dir)
    else:
        prepare_run_dir(run_dir, overwrite)
        tokenizer = build_tokenizer(text, config.tokenizer)
        config.model.vocab_size = tokenizer.vocab_size
    train_ids, val_ids = _load_data(config, tokenizer, text, val_text)
    data_hash = fingerprint(torch.cat([train_ids, val_ids]))
    train_batches = StreamBatches.from_ids(train_ids, cfg.batch_size, cfg.bptt)
    val_batch = max(1, min(cfg.batch_size, len(val_ids) // (cfg.bptt + 1)))
    val_batches = StreamBatches.from_ids(val_ids, val_batch, cfg.bptt, full_chunk=False)

    model = LanguageModel(config.model).to(device)
    optimizer = make_optimizer(model, cfg)
    state, hidden = TrainState(), None
    tokenizer_hash = ckpt.tokenizer_fingerprint(tokenizer)
    if resume:
        state, hidden, saved_hash, rng = load_resume_state(run_dir, model, optimizer, device, tokenizer)
        if saved_hash != data_hash:
            raise CharRNNError(
                f"The corpus {config.corpus} changed since this run started; resume needs the same text."
            )
        restore_rng(rng)
        ckpt.remove_temp_files(run_dir)  # left by a save that was killed
        ckpt.truncate_metrics(run_dir, state.step)  # records after the checkpoint are logged again
    else:
        ckpt.write_run_files(run_dir, config, tokenizer)
        save_resume_state(
            run_dir,
            model,
            optimizer,
            state,
            model.initial_state(cfg.batch_size, device),
            data_hash,
            tokenizer_hash,
        )

    chunks_per_epoch = len(train_batches)
    total_steps = cfg.epochs * chunks_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    reporter.start(
        {
            "run_dir": str(run_dir),
            "level": config.tokenizer.level,
            "vocab_size": tokenizer.vocab_size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_tokens": train_batches.n_tokens,
            "val_tokens": val_batches.n_tokens,
            "chunks_per_epoch": chunks_per_epoch,
            "total_steps": total_steps,
            "start_step": state.step,
            "max_time": cfg.max_time,
            "device": str(device),
            "resumed": resume,
        }
    )

    task = _LanguageModelTask(model, train_batches, val_batches, cfg, device, hidden)
    return run_training_loop(
        task,
        model,
        optimizer,
        cfg,
        state,
        run_dir=run_dir,
        reporter=reporter,
        should_stop=should_stop,
        data_hash=data_hash,
        tokenizer_hash=tokenizer_hash,
        total_steps=total_steps,
    )


def _roll_back(
    run_dir: Path,
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    device: torch.device,
) -> int:
    """After repeated non-finite steps: reload the last saved weights, halve the learning rate; returns its step."""
    saved, _, _, _ = load_resume_state(run_dir, model, optimizer, device)
    state.lr_scale *= 0.5
    state.bad_streak = 0
    state.rollbacks += 1
    return saved.step
