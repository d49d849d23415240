"""Training a seq2seq model: the engine (`charrnn.core.engine`) with teacher-forced batches of sentence pairs.

A step is one batch of pairs; `TrainState.chunk` counts batches into the current epoch, whose order
is fixed by (seed, epoch), so a resumed run continues exactly where it stopped. Nothing carries from
one batch to the next. The loss is the mean cross-entropy per target token (`<eos>` included) with the
gold previous token fed at every step (teacher forcing; below 1, scheduled sampling).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charrnn.core import engine, memory, rundir
from charrnn.core.batching import BatchedExamplesTask
from charrnn.core.errors import CharRNNError
from charrnn.core.state import Reporter, TrainResult, TrainState
from charrnn.core.token_cache import data_fingerprint
from charrnn.core.tokenizers import Tokenizer, build_tokenizer
from charrnn.seq2seq.config import Seq2SeqRunConfig, Seq2SeqTrainConfig
from charrnn.seq2seq.model import Seq2Seq
from charrnn.seq2seq.pairs import EncodedPairs, PairBatches, PairCorpus, encode_pairs, make_batch, read_pairs
from charrnn.seq2seq.run import (
    SOURCE_DIR,
    TARGET_DIR,
    read_seq2seq_config,
    read_side_tokenizers,
)


def load_training_pairs(config: Seq2SeqRunConfig) -> tuple[PairCorpus, PairCorpus]:
    """Read the training pairs and the validation pairs (a file, or a seeded held-out fraction)."""
    encoding, errors, skip_malformed = config.encoding, config.errors, config.skip_malformed
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
    return data_fingerprint([np.asarray(flat, dtype=np.int32)])


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


@dataclass
class PairData:
    train: PairCorpus
    val: PairCorpus


class Seq2SeqRecipe:
    """Sets a seq2seq model up for the training engine."""

    kind = "seq2seq"

    def read_config(self, run_dir: Path) -> Seq2SeqRunConfig:
        return read_seq2seq_config(run_dir)

    def read_data(self, config: Seq2SeqRunConfig, reporter: Reporter) -> PairData:
        train, val = load_training_pairs(config)
        if train.skipped_empty or val.skipped_empty:
            reporter.message(
                f"skipped {train.skipped_empty + val.skipped_empty} pair(s) with an empty source or target"
            )
        if train.malformed_lines:
            reporter.message(f"skipped {len(train.malformed_lines)} malformed line(s) of {train.origin}")
        return PairData(train, val)

    def build_tokenizers(self, config: Seq2SeqRunConfig, data: PairData) -> tuple[Tokenizer, Tokenizer]:
        source = build_tokenizer("\n".join(data.train.sources) + "\n", config.source_tokenizer)
        target = build_tokenizer("\n".join(data.train.targets) + "\n", config.target_tokenizer)
        config.model.source_vocab_size = source.vocab_size
        config.model.target_vocab_size = target.vocab_size
        return source, target

    def read_tokenizers(self, run_dir: Path) -> tuple[Tokenizer, Tokenizer]:
        return read_side_tokenizers(run_dir)

    def write_tokenizers(self, run_dir: Path, tokenizers: tuple[Tokenizer, Tokenizer]) -> None:
        for side, tokenizer in zip((SOURCE_DIR, TARGET_DIR), tokenizers, strict=True):
            rundir.write_tokenizer(run_dir / side, tokenizer)

    def tokenizer_hash(self, tokenizers: tuple[Tokenizer, Tokenizer]) -> str:
        return rundir.tokenizers_fingerprint(*tokenizers)

    def prepare(
        self,
        config: Seq2SeqRunConfig,
        tokenizers: tuple[Tokenizer, Tokenizer],
        data: PairData,
        device: torch.device,
        reporter: Reporter,
    ) -> engine.Prepared:
        cfg = config.training
        source_tokenizer, target_tokenizer = tokenizers
        train_pairs = encode_pairs(data.train, source_tokenizer, target_tokenizer, cfg.max_length)
        val_pairs = encode_pairs(data.val, source_tokenizer, target_tokenizer)
        if train_pairs.dropped_long:
            reporter.message(
                f"skipped {train_pairs.dropped_long} training pair(s) longer than --max-length {cfg.max_length}"
            )
        if len(val_pairs) == 0:
            raise CharRNNError("No validation pair is left after tokenizing; give a --val file with real pairs.")
        batches = PairBatches(train_pairs, cfg.batch_size, cfg.seed)
        model = memory.build_to_train(lambda: Seq2Seq(config.model)).to(device)
        task = Seq2SeqTask(model, batches, val_pairs, cfg, device)
        info = {
            "level": config.target_tokenizer.level,
            "vocab_size": f"{source_tokenizer.vocab_size} -> {target_tokenizer.vocab_size}",
            "train_tokens": train_pairs.n_target_tokens,
            "val_tokens": val_pairs.n_target_tokens,
        }
        return engine.Prepared(task, pairs_fingerprint(train_pairs, val_pairs), info)


def train_seq2seq(config: Seq2SeqRunConfig, run_dir: str | Path, **session: Any) -> TrainResult:
    """Train a seq2seq model on the pairs named in `config` into `run_dir` (`session`: as `train_language_model`)."""
    return engine.train(Seq2SeqRecipe(), config, run_dir, **session)


class Seq2SeqTask(BatchedExamplesTask):
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
        self._setup_forward()

    def step_loss(self, state: TrainState) -> tuple[torch.Tensor, int]:
        rows, mine = self.step_rows(state)
        pairs = self.batches.pairs
        batch = make_batch([pairs.sources[i] for i in rows], [pairs.targets[i] for i in rows]).to(self.device)
        logits, _ = self.forward(batch.src, batch.src_lengths, batch.tgt_in, self.cfg.teacher_forcing)
        loss = self.model.loss(logits, batch.tgt_out, self.cfg.label_smoothing)
        return (loss if mine else loss * 0.0), batch.n_target_tokens if mine else 0

    def evaluate(self) -> float:
        return evaluate_loss(self.model, self.val_pairs, self.device, self.cfg.batch_size)
