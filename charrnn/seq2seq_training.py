"""Seq2seq training: teacher-forced cross-entropy over sentence-pair batches, best checkpoint, resume.

The loop is the language model's (`charrnn.training.run_training_loop`): the same optimisers,
learning-rate schedule, gradient clipping, non-finite-step handling, resume file (weights,
optimiser moments, RNG states and counters in safetensors + JSON) and metrics.jsonl. A step is one batch of pairs;
`TrainState.chunk` counts batches into the current epoch, whose order is fixed by (seed, epoch).
"""

from __future__ import annotations

import shutil
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
    Seq2SeqTrainConfig,
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
    fingerprint,
    load_resume_state,
    make_optimizer,
    prepare_run_dir,
    restore_rng,
    resumed_config,
    run_training_loop,
    save_resume_state,
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
        config = resumed_config(read_seq2seq_config(run_dir), config, run_dir)
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
        state, _, saved_hash, rng = load_resume_state(
            run_dir, model, optimizer, device, tokenizer_hash=tokenizer_hash
        )
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

    task = _Seq2SeqTask(model, batches, val_pairs, cfg, device)
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


class _Seq2SeqTask:
    """Teacher-forced batches of sentence pairs; nothing carries from one batch to the next."""

    def __init__(
        self,
        model: Seq2Seq,
        batches: PairBatches,
        val_pairs: EncodedPairs,
        cfg: Seq2SeqTrainConfig,
        device: torch.device,
    ) -> None:
        self.model, self.batches, self.val_pairs, self.cfg, self.device = model, batches, val_pairs, cfg, device
        self.batches_per_epoch = len(batches)
        self.forward = torch.compile(model) if cfg.compile else model  # compile wraps the forward pass only

    def start_epoch(self) -> None:
        pass

    def step_loss(self, state: TrainState) -> tuple[torch.Tensor, int]:
        batch = self.batches.batch(state.epoch, state.chunk).to(self.device)
        logits, _ = self.forward(batch.src, batch.src_lengths, batch.tgt_in, self.cfg.teacher_forcing)
        return self.model.loss(logits, batch.tgt_out, self.cfg.label_smoothing), batch.n_target_tokens

    def end_step(self, finite: bool) -> None:
        pass

    def evaluate(self) -> float:
        return evaluate_loss(self.model, self.val_pairs, self.device, self.cfg.batch_size)

    def carried_state(self) -> torch.Tensor:
        return NO_HIDDEN
