"""Training a language model: the engine (`charrnn.core.engine`) with the truncated-BPTT task.

This module only sets the language model up for the engine: find the corpus files, build or read the
tokenizer, encode the text into a memory-mapped token cache (`charrnn.core.token_cache`), split it
(`charrnn.lm.heldout`), lay it out for truncated BPTT, build the model.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charrnn.core import engine, memory, rundir
from charrnn.core.corpus import expand_corpus, has_text
from charrnn.core.errors import CharRNNError
from charrnn.core.state import Reporter, TrainResult
from charrnn.core.text import check_encoding
from charrnn.core.token_cache import (
    Note,
    Progress,
    TokenFile,
    cached_tokenizer,
    cached_tokens,
    data_fingerprint,
    default_cache_root,
    old_cache_root,
)
from charrnn.core.tokenizers import Tokenizer
from charrnn.lm.config import LMTrainConfig, RunConfig
from charrnn.lm.heldout import TokenView, split_blocks, split_tail
from charrnn.lm.model import LanguageModel
from charrnn.lm.run import read_config
from charrnn.lm.truncated_bptt import StreamBatches, TruncatedBPTTTask, validation_batch_size


@dataclass
class CorpusFiles:
    """The training files (a corpus folder expanded, in order), the --val files, and the token cache folders."""

    files: list[Path]
    val_files: list[Path] | None
    cache_root: Path  # where caches are found and written
    old_cache_roots: tuple[Path, ...] = ()  # where caches are also found: beside the corpus, as before 0.3


def corpus_files(config: RunConfig) -> CorpusFiles:
    """The files `config` names, checked to exist, and where their token caches live."""
    check_encoding(config.encoding, config.errors)
    given = [config.corpus, *config.more_corpora]
    files = expand_corpus(given, config.glob)
    val_files = expand_corpus([config.val_corpus], config.glob) if config.val_corpus else None
    if not has_text(files):
        raise CharRNNError(f"{given[0]} is empty; a corpus needs some text to learn from.")
    if config.cache_dir:
        return CorpusFiles(files, val_files, Path(config.cache_dir))
    return CorpusFiles(files, val_files, default_cache_root(), (old_cache_root([Path(p) for p in given]),))


def prepare_tokens(
    config: RunConfig,
    tokenizer: Tokenizer,
    data: CorpusFiles,
    progress: Progress | None = None,
    note: Note | None = None,
    verify: bool = False,
) -> tuple[TokenFile, TokenFile | None]:
    """The token files of the corpus and of --val under `tokenizer`, from the cache or written now.

    `note` hears why a cache is rebuilt; `verify` re-hashes every corpus file (`charrnn.core.token_cache`).
    """
    tokenizer_hash = rundir.tokenizer_fingerprint(tokenizer)

    def tokens(files: list[Path]) -> TokenFile:
        return cached_tokens(
            files, tokenizer, tokenizer_hash, config.encoding, config.errors, data.cache_root, progress, note,
            verify, old_roots=data.old_cache_roots,
        )  # fmt: skip

    return tokens(data.files), tokens(data.val_files) if data.val_files else None


@dataclass
class PreparedCorpus:
    """What `prepare_corpus` made or found: the tokenizer, the token files, and the files they cover."""

    tokenizer: Tokenizer
    corpus: TokenFile
    val: TokenFile | None
    files: list[Path]
    val_files: list[Path] | None


def prepare_corpus(
    config: RunConfig, progress: Progress | None = None, note: Note | None = None, verify: bool = False
) -> PreparedCorpus:
    """Build (or find) the token cache a fresh `train` with `config` would use: tokenizer and token files.

    `note` hears why a cache is rebuilt; `verify` re-hashes every corpus file against the cache's record.
    """
    config.validate()
    data = corpus_files(config)
    tokenizer = cached_tokenizer(
        data.files,
        config.tokenizer,
        config.encoding,
        config.errors,
        data.cache_root,
        progress,
        note,
        verify,
        old_roots=data.old_cache_roots,
    )
    corpus, val = prepare_tokens(config, tokenizer, data, progress, note, verify)
    return PreparedCorpus(tokenizer, corpus, val, data.files, data.val_files)


def split_views(
    cfg: LMTrainConfig, corpus: TokenFile, val_file: TokenFile | None
) -> tuple[TokenView, TokenView, int | None]:
    """(training, validation, block size B) of the token files: --val, or the --val-split rule (`charrnn.lm.heldout`)."""
    ids = corpus.ids()
    if val_file is not None:
        return TokenView.of(ids), TokenView.of(val_file.ids()), None
    if cfg.val_split == "tail":
        return (*split_tail(ids, cfg.val_fraction), None)
    return split_blocks(ids, cfg.val_fraction, cfg.bptt)


def validation_tokens(config: RunConfig, tokenizer: Tokenizer, limit: int) -> np.ndarray:
    """The first `limit` ids of a run's validation stream, as validation reads it (the token cache is built if missing)."""
    corpus, val_file = prepare_tokens(config, tokenizer, corpus_files(config))
    _, val_view, _ = split_views(config.training, corpus, val_file)
    return val_view.read(0, min(limit, len(val_view)))


class LanguageModelRecipe(engine.OneTokenizer):
    """Sets a language model up for the training engine."""

    kind = "lm"

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress  # called while a token cache is built: (phase, bytes done, bytes in all)
        self.cache_notes: list[str] = []  # why a token cache was rebuilt, shown under the training header

    def read_config(self, run_dir: Path) -> RunConfig:
        return read_config(run_dir)

    def read_data(self, config: RunConfig, reporter: Reporter) -> CorpusFiles:
        return corpus_files(config)

    def build_tokenizers(self, config: RunConfig, data: CorpusFiles) -> Tokenizer:
        tokenizer = cached_tokenizer(
            data.files, config.tokenizer, config.encoding, config.errors, data.cache_root, self.progress,
            self.cache_notes.append, old_roots=data.old_cache_roots,
        )  # fmt: skip
        config.model.vocab_size = tokenizer.vocab_size
        return tokenizer

    def prepare(
        self, config: RunConfig, tokenizer: Tokenizer, data: CorpusFiles, device: torch.device, reporter: Reporter
    ) -> engine.Prepared:
        cfg = config.training
        corpus, val_file = prepare_tokens(config, tokenizer, data, self.progress, self.cache_notes.append)
        notes = list(self.cache_notes)  # shown under the training header (not with --quiet)
        for prepared in (corpus, val_file):
            if prepared is not None and not prepared.reused:
                seconds = max(prepared.header["seconds"], 1e-9)
                notes.append(
                    f"token cache {prepared.folder}: {prepared.n_tokens:,} tokens, "
                    f"{prepared.size_bytes / 1e6:.1f} MB, {prepared.header['bytes'] / 1e6 / seconds:.1f} MB/s"
                )
        train_view, val_view, block = split_views(cfg, corpus, val_file)
        if cfg.val_split == "tail":  # runs made before token caches hashed every id, in order
            data_hash = data_fingerprint(itertools.chain(train_view.pieces(), val_view.pieces()))
        elif val_file is not None:
            data_hash = _hash(corpus.key, val_file.key)
        else:
            data_hash = _hash(corpus.key, "blocks", cfg.val_fraction, block)
        train_batches = StreamBatches.from_ids(train_view, cfg.batch_size, cfg.bptt)
        val_batch = validation_batch_size(len(val_view), cfg.batch_size, cfg.bptt)
        val_batches = StreamBatches.from_ids(val_view, val_batch, cfg.bptt, full_chunk=False)
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
        model = memory.build_to_train(lambda: LanguageModel(m), activations).to(device)
        task = TruncatedBPTTTask(model, train_batches, val_batches, cfg, device)
        info = {
            "level": config.tokenizer.level,
            "vocab_size": tokenizer.vocab_size,
            "train_tokens": train_batches.n_tokens,
            "val_tokens": val_batches.n_tokens,
            "notes": notes,
        }
        return engine.Prepared(task, data_hash, info)


def _hash(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:16]


def train_language_model(config: RunConfig, run_dir: str | Path, **session: Any) -> TrainResult:
    """Train a language model on `config.corpus` into `run_dir`.

    `session` takes `engine.train`'s keywords: resume (then `config` is the run's own), overwrite,
    reporter, should_stop.
    """
    return engine.train(LanguageModelRecipe(), config, run_dir, **session)
