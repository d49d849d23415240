"""Language-model training: truncated BPTT over parallel streams, clipping, checkpoints, resume."""

from __future__ import annotations

import hashlib
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from charrnn import checkpoint as ckpt
from charrnn.config import RunConfig, TrainConfig
from charrnn.data import StreamBatches, encode_ids, read_corpus, split_train_val
from charrnn.errors import CharRNNError
from charrnn.model import LanguageModel, State, detach_state, state_from_tensors, state_tensors
from charrnn.runtime import autocast, resolve_device, seed_everything, set_threads
from charrnn.tokenizers import Tokenizer, build_tokenizer

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
    history: list[dict[str, Any]] = field(default_factory=list)


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
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CharRNNError(f"Cannot create --out {run_dir}: {exc.strerror}.") from None
    if not os.access(run_dir, os.W_OK):
        raise CharRNNError(f"--out {run_dir} is not writable; choose a directory you can write to.")


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named in the config."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr)
    # The fused kernel: one pass over all parameters instead of a Python loop per tensor
    # (2x512 LSTM on one CPU thread: 16 ms instead of 90 ms per step).
    fused = (
        {"fused": True} if all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params) else {}
    )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, **fused)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)


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
    if cfg.warmup_steps > 0:
        lr *= min(1.0, (state.step + 1) / cfg.warmup_steps)
    return max(lr, cfg.min_lr) if cfg.schedule != "constant" else lr


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
    run_dir: Path, model: LanguageModel, optimizer: torch.optim.Optimizer, device: torch.device
) -> tuple[TrainState, State | None, str, dict[str, torch.Tensor]]:
    """Restore weights and optimiser from resume.safetensors; returns (state, hidden, data hash, rng tensors)."""
    path = run_dir / ckpt.RESUME_FILE
    tensors, meta = ckpt.load_tensors(path)
    try:
        model_tensors = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
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
        saved = ckpt.read_config(run_dir)
        for name in ("epochs", "max_steps", "max_time", "device", "threads", "precision", "compile"):
            setattr(saved.training, name, getattr(config.training, name))
        config = saved
        if not (run_dir / ckpt.RESUME_FILE).is_file():
            raise CharRNNError(f"{run_dir} has no {ckpt.RESUME_FILE}; it cannot be resumed (start a new run).")
    config.validate()
    cfg = config.training
    device = resolve_device(cfg.device)
    set_threads(cfg.threads)
    seed_everything(cfg.seed)

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
    if resume:
        state, hidden, saved_hash, rng = load_resume_state(run_dir, model, optimizer, device)
        if saved_hash != data_hash:
            raise CharRNNError(
                f"The corpus {config.corpus} changed since this run started; resume needs the same text."
            )
        restore_rng(rng)
    else:
        ckpt.write_run_files(run_dir, config, tokenizer)

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

    def checkpoint_now() -> None:
        save_resume_state(run_dir, model, optimizer, state, hidden_or_zero(), data_hash)

    def hidden_or_zero() -> State:
        return hidden if hidden is not None else model.initial_state(cfg.batch_size, device)

    def run_evaluation(full: bool) -> float:
        val_loss = evaluate(model, val_batches, device, None if full else cfg.eval_tokens)
        state.last_val_loss = val_loss
        improved = state.best_val_loss is None or val_loss < state.best_val_loss
        if improved:
            state.best_val_loss = val_loss
            ckpt.save_tensors(run_dir / ckpt.WEIGHTS_FILE, model.state_dict(), {"step": state.step})
        lowered = update_plateau(cfg, state, val_loss)
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
        return val_loss

    model.train()
    session_start = time.perf_counter()
    elapsed_before, tokens_before = state.elapsed, state.tokens_seen
    window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
    stop_reason = "epochs"
    last_eval_step = -1
    params = [p for p in model.parameters() if p.requires_grad]
    # fp16 needs loss scaling; bf16 and fp32 do not. torch.compile wraps the forward pass only.
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    forward = torch.compile(model) if cfg.compile else model

    def time_progress(elapsed: float) -> float | None:
        """Elapsed fraction of the time this run will have had when the session's --max-time runs out."""
        if cfg.max_time is None:
            return None
        return elapsed / (elapsed_before + cfg.max_time * 60)

    while state.epoch < cfg.epochs:
        if state.chunk == 0:
            hidden = None
        while state.chunk < chunks_per_epoch:
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
            x, y = train_batches.chunk(state.chunk, device)
            if hidden is not None:
                hidden = detach_state(hidden)
            with autocast(device, cfg.precision):
                out, new_hidden = forward(x, hidden)
                loss = model.loss(out, y)
            optimizer.zero_grad(set_to_none=True)
            finite = scaled = bool(torch.isfinite(loss))
            if finite:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
                finite = bool(torch.isfinite(grad_norm))
            state.chunk += 1
            state.step += 1
            if finite:
                scaler.step(optimizer)
                hidden = new_hidden
                state.bad_streak = 0
                window_loss += loss.item()
                window_steps += 1
            else:
                optimizer.zero_grad(set_to_none=True)
                hidden = None
                state.skipped_steps += 1
                state.bad_streak += 1
                reporter.message(f"step {state.step}: non-finite loss or gradient, step skipped")
                if state.bad_streak >= cfg.max_bad_steps:
                    _roll_back(run_dir, model, optimizer, state, device)
                    reporter.message(
                        f"{cfg.max_bad_steps} non-finite steps in a row: rolled back, "
                        f"learning rate scaled to x{state.lr_scale:g}"
                    )
            if scaled:
                scaler.update()  # no-op unless fp16: lowers the loss scale after an overflow
            state.tokens_seen += y.numel()
            window_tokens += y.numel()
            state.elapsed = elapsed_before + time.perf_counter() - session_start

            if window_steps and (state.step % 10 == 0 or state.chunk == chunks_per_epoch):
                seconds = time.perf_counter() - window_start
                record = {
                    "step": state.step,
                    "epoch": state.epoch + state.chunk / chunks_per_epoch,
                    "train_loss": window_loss / window_steps,
                    "lr": lr,
                    "tokens_per_second": window_tokens / max(seconds, 1e-9),
                    "elapsed": state.elapsed,
                }
                ckpt.append_metrics(run_dir, record)
                reporter.step(record)
                window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
            if state.step % cfg.eval_every == 0:
                run_evaluation(full=False)
                last_eval_step = state.step
            if state.step % cfg.save_every == 0:
                checkpoint_now()
        else:
            state.epoch += 1
            state.chunk = 0
            continue
        break

    if last_eval_step != state.step:
        run_evaluation(full=False)
    checkpoint_now()
    seconds = time.perf_counter() - session_start
    return TrainResult(
        run_dir=run_dir,
        steps=state.step,
        epochs=state.epoch + state.chunk / chunks_per_epoch,
        best_val_loss=state.best_val_loss,
        last_val_loss=state.last_val_loss,
        tokens_per_second=(state.tokens_seen - tokens_before) / max(seconds, 1e-9),
        seconds=seconds,
        stop_reason=stop_reason,
        skipped_steps=state.skipped_steps,
    )


def _roll_back(
    run_dir: Path,
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    device: torch.device,
) -> None:
    """After repeated non-finite steps: reload the last saved weights and halve the learning rate."""
    if (run_dir / ckpt.RESUME_FILE).is_file():
        load_resume_state(run_dir, model, optimizer, device)
    state.lr_scale *= 0.5
    state.bad_streak = 0
    state.rollbacks += 1
