"""Training a language model: the engine (`charrnn.core.engine`) with the truncated-BPTT task.

This module only sets the language model up for the engine: read the corpus, build or read the
tokenizer, encode and split the text, lay it out for truncated BPTT, build the model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charrnn.core import engine, memory, rundir
from charrnn.core.errors import CharRNNError
from charrnn.core.state import Reporter, TrainResult
from charrnn.core.text import read_corpus
from charrnn.core.tokenizers import Tokenizer, build_tokenizer
from charrnn.lm.config import RunConfig
from charrnn.lm.model import LanguageModel
from charrnn.lm.run import read_config
from charrnn.lm.truncated_bptt import (
    StreamBatches,
    TruncatedBPTTTask,
    encode_ids,
    split_train_val,
    validation_batch_size,
)


def fingerprint(ids: torch.Tensor) -> str:
    """A short hash of a token stream, to check that a resumed run reads the same data."""
    return hashlib.sha256(ids.numpy().tobytes()).hexdigest()[:16]


@dataclass
class CorpusText:
    """The raw training text and, with --val, the validation text."""

    text: str
    val_text: str | None


class LanguageModelRecipe:
    """Sets a language model up for the training engine."""

    kind = "lm"

    def read_config(self, run_dir: Path) -> RunConfig:
        return read_config(run_dir)

    def read_data(self, config: RunConfig, reporter: Reporter) -> CorpusText:
        text = read_corpus(config.corpus, config.encoding, config.errors)
        val_text = read_corpus(config.val_corpus, config.encoding, config.errors) if config.val_corpus else None
        return CorpusText(text, val_text)

    def build_tokenizers(self, config: RunConfig, data: CorpusText) -> Tokenizer:
        tokenizer = build_tokenizer(data.text, config.tokenizer)
        config.model.vocab_size = tokenizer.vocab_size
        return tokenizer

    def read_tokenizers(self, run_dir: Path) -> Tokenizer:
        return rundir.read_tokenizer(run_dir)

    def write_tokenizers(self, run_dir: Path, tokenizers: Tokenizer) -> None:
        rundir.write_tokenizer(run_dir, tokenizers)

    def tokenizer_hash(self, tokenizers: Tokenizer) -> str:
        return rundir.tokenizer_fingerprint(tokenizers)

    def prepare(
        self, config: RunConfig, tokenizer: Tokenizer, data: CorpusText, device: torch.device, reporter: Reporter
    ) -> engine.Prepared:
        cfg = config.training
        ids = encode_ids(tokenizer, data.text)
        if data.val_text is not None:
            train_ids, val_ids = ids, encode_ids(tokenizer, data.val_text)
        else:
            train_ids, val_ids = split_train_val(ids, cfg.val_fraction)
        train_batches = StreamBatches.from_ids(train_ids, cfg.batch_size, cfg.bptt)
        val_batch = validation_batch_size(len(val_ids), cfg.batch_size, cfg.bptt)
        val_batches = StreamBatches.from_ids(val_ids, val_batch, cfg.bptt, full_chunk=False)
        if tokenizer.vocab_size != config.model.vocab_size:
            raise CharRNNError(
                f"The tokenizer has {tokenizer.vocab_size} entries but config.json says {config.model.vocab_size}; "
                "the tokenizer file belongs to another run."
            )
        requested = config.tokenizer.vocab_size
        if config.tokenizer.level == "subword" and requested and tokenizer.vocab_size < requested:
            reporter.message(
                f"note: sentencepiece found {tokenizer.vocab_size:,} units in this corpus, fewer than "
                f"--vocab-size {requested:,}; the model uses {tokenizer.vocab_size:,}"
            )
        m = config.model  # activations kept for backprop: (batch, bptt) x (gates of every layer + logits)
        activations = cfg.batch_size * cfg.bptt * (8 * m.layers * m.hidden + 3 * m.vocab_size) * 4
        memory.check_model_fits(lambda: LanguageModel(m), memory.TRAIN_BYTES_PER_PARAMETER, activations, "train")
        model = LanguageModel(config.model).to(device)
        task = TruncatedBPTTTask(model, train_batches, val_batches, cfg, device)
        info = {
            "level": config.tokenizer.level,
            "vocab_size": tokenizer.vocab_size,
            "train_tokens": train_batches.n_tokens,
            "val_tokens": val_batches.n_tokens,
        }
        return engine.Prepared(task, fingerprint(torch.cat([train_ids, val_ids])), info)


def train_language_model(config: RunConfig, run_dir: str | Path, **session: Any) -> TrainResult:
    """Train a language model on `config.corpus` into `run_dir`.

    `session` takes `engine.train`'s keywords: resume (then `config` is the run's own), overwrite,
    reporter, should_stop.
    """
    return engine.train(LanguageModelRecipe(), config, run_dir, **session)
