"""Seq2seq training: teacher-forced cross-entropy over sentence-pair batches, best checkpoint, resume.

The loop mirrors the language model's (`charrnn.training`): the same optimisers, learning-rate
schedule, gradient clipping, non-finite-step handling, resume file (weights, optimiser moments,
RNG states and counters in safetensors + JSON) and metrics.jsonl. A step is one batch of pairs;
`TrainState.chunk` counts batches into the current epoch, whose order is fixed by (seed, epoch).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from charrnn import checkpoint as ckpt
from charrnn.errors import CharRNNError
from charrnn.pairs import EncodedPairs, PairBatches, PairCorpus, encode_pairs, read_pairs
from charrnn.runtime import resolve_device, seed_everything, set_threads
from charrnn.seq2seq import (
    SOURCE_DIR,
    TARGET_DIR,
    Seq2Seq,
    Seq2SeqRunConfig,
    read_seq2seq_config,
    read_side_tokenizers,
    tokenizers_fingerprint,
    write_seq2seq_run_files,
)
from charrnn.tokenizers import Tokenizer, build_tokenizer
from charrnn.training import (
    Reporter,
    SilentReporter,
    TrainResult,
    TrainState,
    _roll_back,
    fingerprint,
    learning_rate,
    load_resume_state,
    make_optimizer,
    prepare_run_dir,
    restore_rng,
    save_resume_state,
    update_plateau,
)

NO_HIDDEN = torch.zeros(1)  # the LM resume file stores a carried hidden state; seq2seq has none


def load_training_pairs(
    config: Seq2SeqRunConfig, encoding: str = "utf-8", errors: str = "strict", skip_malformed: bool = False
) -> tuple[PairCorpus, PairCorpus]:
    """Read the training pairs and the validation pairs (a file, or a seeded held-out fraction)."""
    train = read_pairs(config.pairs, config.source_file, config.target_file, encoding, errors, skip_malformed)
    if config.val_pairs or config.val_source_file or config.val_target_file:
        val = read_pairs(
            config.val_pairs,
            config.val_source_file,
            config.val_target_file,
            encoding,
            errors,
            skip_malformed,
            what="--val",
        )
        return train, val
    n_val = max(int(len(train) * config.training.val_fraction), 1)
    if len(train) - n_val < 1:
        raise CharRNNError(
            f"{train.origin} has only {len(train)} pair(s), too few to hold some out for validation."
        )
    generator = torch.Generator().manual_seed(config.training.seed)
    perm = torch.randperm(len(train), generator=generator).tolist()
    held, kept = sorted(perm[:n_val]), sorted(perm[n_val:])

    def pick(rows: list[int]) -> tuple[list[str], list[str]]:
        return [train.sources[i] for i in rows], [train.targets[i] for i in rows]

    val = PairCorpus(*pick(held), origin=f"{train.origin} (held out)")
    rest = PairCorpus(*pick(kept), train.origin, train.skipped_empty, train.malformed_lines)
    return rest, val


def pairs_fingerprint(*parts: EncodedPairs) -> str:
    """A short hash of encoded pairs, to check that a resumed run reads the same data."""
    flat: list[int] = []
    for encoded in parts:
        for source, target in zip(encoded.sources, encoded.targets, strict=True):
            flat += source + [-1] + target + [-2]
    return fingerprint(torch.tensor(flat, dtype=torch.int32))


@torch.inference_mode()
def evaluate_loss(model: Seq2Seq, pairs: EncodedPairs, device: torch.device, batch_size: int = 64) -> float:
    """Mean teacher-forced cross-entropy per target token (`<eos>` included) over all pairs."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    batches = PairBatches(pairs, batch_size, shuffle=False)
    for index in range(len(batches)):
        batch = batches.batch(0, index).to(device)
        logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
        n = batch.n_target_tokens
        total += float(model.loss(logits, batch.tgt_out)) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


def _clear_tokenizers(run_dir: Path) -> None:
    for side in (SOURCE_DIR, TARGET_DIR):
        if (run_dir / side).is_dir():
            shutil.rmtree(run_dir / side)


def train_seq2seq(
    config: Seq2SeqRunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    should_stop: Callable[[], bool] | None = None,
    encoding: str = "utf-8",
    errors: str = "strict",
    skip_malformed: bool = False,
) -> TrainResult:
    """Train (or resume) a seq2seq model on the pairs named in `config`, writing the run to `run_dir`.

    On resume, `config` supplies only the stopping rules (epochs, max steps, max time) and the
    device/threads; everything else comes from the run directory.
    """
    reporter = reporter or SilentReporter()
    should_stop = should_stop or (lambda: False)
    run_dir = Path(run_dir)
    if resume:
        saved = read_seq2seq_config(run_dir)
        for name in ("epochs", "max_steps", "max_time", "device", "threads"):
            setattr(saved.training, name, getattr(config.training, name))
        config = saved
        if not (run_dir / ckpt.RESUME_FILE).is_file():
            raise CharRNNError(
                f"{run_dir} has no {ckpt.RESUME_FILE}; it cannot be resumed "
                "(start it again with the same --out and --overwrite)."
            )
    config.validate()
    cfg = config.training
    device = resolve_device(cfg.device)
    set_threads(cfg.threads)
    seed_everything(cfg.seed)

    train_corpus, val_corpus = load_training_pairs(config, encoding, errors, skip_malformed)
    if train_corpus.skipped_empty or val_corpus.skipped_empty:
        reporter.message(
            f"skipped {train_corpus.skipped_empty + val_corpus.skipped_empty} pair(s) with an empty source or target"
        )
    if train_corpus.malformed_lines:
        reporter.message(f"skipped {len(train_corpus.malformed_lines)} malformed line(s) of {train_corpus.origin}")
    source_tokenizer: Tokenizer
    target_tokenizer: Tokenizer
    if resume:
        source_tokenizer, target_tokenizer = read_side_tokenizers(run_dir)
    else:
        prepare_run_dir(run_dir, overwrite)
        _clear_tokenizers(run_dir)
        source_tokenizer = build_tokenizer("\n".join(train_corpus.sources) + "\n", config.source_tokenizer)
        target_tokenizer = build_tokenizer("\n".join(train_corpus.targets) + "\n", config.target_tokenizer)
        config.model.source_vocab_size = source_tokenizer.vocab_size
        config.model.target_vocab_size = target_tokenizer.vocab_size
    train_pairs = encode_pairs(train_corpus, source_tokenizer, target_tokenizer, cfg.max_length)
    val_pairs = encode_pairs(val_corpus, source_tokenizer, target_tokenizer)
    if train_pairs.dropped_long:
        reporter.message(
            f"skipped {train_pairs.dropped_long} training pair(s) longer than --max-length {cfg.max_length}"
        )
    if len(val_pairs) == 0:
        raise CharRNNError("No validation pair is left after tokenizing; give a --val file with real pairs.")
    data_hash = pairs_fingerprint(train_pairs, val_pairs)
    batches = PairBatches(train_pairs, cfg.batch_size, cfg.seed)

    model = Seq2Seq(config.model).to(device)
    optimizer = make_optimizer(model, cfg)
    state = TrainState()
    tokenizer_hash = tokenizers_fingerprint(source_tokenizer, target_tokenizer)
    if resume:
        state, _, saved_hash, rng = load_resume_state(run_dir, model, optimizer, device)
        if saved_hash != data_hash:
            raise CharRNNError(
                "The training or validation pairs changed since this run started; resume needs the same data."
            )
        restore_rng(rng)
        ckpt.remove_temp_files(run_dir)  # left by a save that was killed
        ckpt.truncate_metrics(run_dir, state.step)  # records after the checkpoint are logged again
    else:
        write_seq2seq_run_files(run_dir, config, source_tokenizer, target_tokenizer)
        save_resume_state(run_dir, model, optimizer, state, NO_HIDDEN, data_hash, tokenizer_hash)

    batches_per_epoch = len(batches)
    total_steps = cfg.epochs * batches_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    reporter.start(
        {
            "run_dir": str(run_dir),
            "level": config.target_tokenizer.level,
            "vocab_size": f"{source_tokenizer.vocab_size} -> {target_tokenizer.vocab_size}",
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_tokens": train_pairs.n_target_tokens,
            "val_tokens": val_pairs.n_target_tokens,
            "chunks_per_epoch": batches_per_epoch,
            "total_steps": total_steps,
            "start_step": state.step,
            "max_time": cfg.max_time,
            "device": str(device),
            "resumed": resume,
        }
    )

    def run_evaluation(scheduled: bool = True) -> float:
        """Evaluate; only evaluations on the eval cadence feed the plateau schedule (so a stop changes nothing)."""
        val_loss = evaluate_loss(model, val_pairs, device, cfg.batch_size)
        state.last_val_loss = val_loss
        improved = state.best_val_loss is None or val_loss < state.best_val_loss
        if improved:
            state.best_val_loss = val_loss
            ckpt.save_tensors(
                run_dir / ckpt.WEIGHTS_FILE, model.state_dict(), {"step": state.step, "tokenizer": tokenizer_hash}
            )
        lowered = scheduled and update_plateau(cfg, state, val_loss)
        record = {"step": state.step, "epoch": state.epoch, "val_loss": val_loss, "best": improved}
        ckpt.append_metrics(run_dir, record)
        reporter.evaluate(record)
        if lowered:
            reporter.message(f"validation loss stalled: learning rate scaled to x{state.lr_scale:g}")
        return val_loss

    def checkpoint_now() -> None:
        nonlocal last_save_time
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            reporter.message(f"step {state.step}: weights are not finite; keeping the previous checkpoint")
            return
        save_resume_state(run_dir, model, optimizer, state, NO_HIDDEN, data_hash, tokenizer_hash)
        last_save_time = time.perf_counter()

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    session_start = time.perf_counter()
    elapsed_before, tokens_before = state.elapsed, state.tokens_seen
    window_tokens, window_start, last_save_time = 0, time.perf_counter(), time.perf_counter()
    stop_reason, last_eval_step = "epochs", -1

    while state.epoch < cfg.epochs:
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
            lr = learning_rate(cfg, state, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = batches.batch(state.epoch, state.chunk).to(device)
            logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in, cfg.teacher_forcing)
            loss = model.loss(logits, batch.tgt_out, cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            finite = bool(torch.isfinite(loss))
            if finite:
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
                finite = bool(torch.isfinite(grad_norm))
            state.chunk += 1
            state.step += 1
            if finite:
                optimizer.step()
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
            n_tokens = batch.n_target_tokens
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
