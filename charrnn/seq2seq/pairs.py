"""Parallel text for seq2seq: reading TSV or parallel files, encoding, and padded pair batches.

Input formats
  TSV             one pair per line, `source<TAB>target`; a line with any other number of tab-separated
                  fields is malformed and reported with its line number.
  parallel files  `--src FILE --tgt FILE`: line i of one translates line i of the other.
Pairs whose source or target is empty (after trimming spaces) are skipped and counted.

Token layout: the encoder reads `source + <eos>`; the decoder reads `<eos> + target` and predicts
`target + <eos>` (the same "`<eos>` starts a line" convention as the language model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from charrnn.core.batching import LengthBatches
from charrnn.core.errors import CharRNNError
from charrnn.core.scoring import pad_sequences, teacher_inputs
from charrnn.core.special_tokens import EOS_ID, PAD_ID
from charrnn.core.text import read_text
from charrnn.core.tokenizers import Tokenizer, split_lines

MAX_REPORTED_LINES = 5


@dataclass
class PairCorpus:
    """Source/target sentence pairs read from disk, with what was skipped."""

    sources: list[str]
    targets: list[str]
    origin: str  # the file(s) they came from, for messages
    skipped_empty: int = 0  # pairs with an empty side
    malformed_lines: list[int] = field(default_factory=list)  # 1-based TSV line numbers skipped (if allowed)

    def __len__(self) -> int:
        return len(self.sources)


def _line_list(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:MAX_REPORTED_LINES])
    more = len(numbers) - MAX_REPORTED_LINES
    return shown + (f" and {more} more" if more > 0 else "")


def read_pairs_tsv(
    path: str | Path, encoding: str = "utf-8", errors: str = "strict", skip_malformed: bool = False
) -> PairCorpus:
    """Read `source<TAB>target` lines; malformed lines are an error (or skipped and listed)."""
    lines = split_lines(read_text(path, encoding, errors))
    sources, targets, malformed, fields_seen = [], [], [], {}
    skipped = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            skipped += 1
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            malformed.append(number)
            fields_seen.setdefault(len(parts), number)
            continue
        source, target = parts[0].strip(), parts[1].strip()
        if not source or not target:
            skipped += 1
            continue
        sources.append(source)
        targets.append(target)
    if malformed and not skip_malformed:
        if not sources and 1 in fields_seen:
            raise CharRNNError(
                f"{path} has no tab characters: give `source<TAB>target` lines, or two parallel files "
                "with --src FILE --tgt FILE."
            )
        counts = ", ".join(
            f"{n} field{'s' if n != 1 else ''} (e.g. line {line})" for n, line in fields_seen.items()
        )
        raise CharRNNError(
            f"{path}: {len(malformed)} malformed line(s), expected exactly one tab (source<TAB>target): "
            f"line {_line_list(malformed)}; found {counts}. Fix them or pass --skip-malformed."
        )
    if not sources:
        raise CharRNNError(f"{path} holds no pair with both a source and a target.")
    return PairCorpus(sources, targets, str(path), skipped, malformed)


def read_parallel_files(
    source_path: str | Path, target_path: str | Path, encoding: str = "utf-8", errors: str = "strict"
) -> PairCorpus:
    """Read two line-aligned files; they must have the same number of lines."""
    source_lines = split_lines(read_text(source_path, encoding, errors))
    target_lines = split_lines(read_text(target_path, encoding, errors))
    if len(source_lines) != len(target_lines):
        raise CharRNNError(
            f"--src {source_path} has {len(source_lines)} lines but --tgt {target_path} has "
            f"{len(target_lines)}; parallel files must be line-aligned."
        )
    sources, targets, skipped = [], [], 0
    for source, target in zip(source_lines, target_lines, strict=True):
        source, target = source.strip(), target.strip()
        if not source or not target:
            skipped += 1
            continue
        sources.append(source)
        targets.append(target)
    if not sources:
        raise CharRNNError(f"{source_path} and {target_path} hold no pair with both a source and a target.")
    return PairCorpus(sources, targets, f"{source_path} + {target_path}", skipped)


def read_pairs(
    pairs: str | Path | None = None,
    source: str | Path | None = None,
    target: str | Path | None = None,
    encoding: str = "utf-8",
    errors: str = "strict",
    skip_malformed: bool = False,
    what: str = "PAIRS",
) -> PairCorpus:
    """Read pairs from a TSV file or from a source file and a target file (exactly one of the two)."""
    if pairs is not None and (source is not None or target is not None):
        raise CharRNNError(f"Give either a {what} TSV file or --src/--tgt parallel files, not both.")
    if pairs is not None:
        return read_pairs_tsv(pairs, encoding, errors, skip_malformed)
    if source is None or target is None:
        raise CharRNNError(f"Give a {what} TSV file (source<TAB>target lines), or both --src FILE and --tgt FILE.")
    return read_parallel_files(source, target, encoding, errors)


@dataclass
class EncodedPairs:
    """Token ids of each pair: sources end with `<eos>`, targets do not (the batcher adds it)."""

    sources: list[list[int]]
    targets: list[list[int]]
    dropped_long: int = 0

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def n_target_tokens(self) -> int:
        """Predicted tokens in one pass (each target plus its `<eos>`)."""
        return sum(len(t) + 1 for t in self.targets)


def encode_source(tokenizer: Tokenizer, text: str) -> list[int]:
    """The ids the encoder reads for one source sentence: its tokens and a closing `<eos>`."""
    return tokenizer.encode_line(" ".join(text.split("\n"))) + [EOS_ID]


def encode_pairs(
    corpus: PairCorpus, source_tokenizer: Tokenizer, target_tokenizer: Tokenizer, max_length: int | None = None
) -> EncodedPairs:
    """Encode every pair, dropping those longer than `max_length` tokens on either side."""
    sources, targets, dropped = [], [], 0
    for source, target in zip(corpus.sources, corpus.targets, strict=True):
        s = encode_source(source_tokenizer, source)
        t = target_tokenizer.encode_line(target)
        if not t or len(s) < 2:
            continue
        if max_length is not None and (len(s) > max_length + 1 or len(t) > max_length):
            dropped += 1
            continue
        sources.append(s)
        targets.append(t)
    return EncodedPairs(sources, targets, dropped)


@dataclass
class PairBatch:
    """One padded batch, ready for `Seq2Seq.forward`."""

    src: torch.Tensor  # (batch, src_time)
    src_lengths: torch.Tensor  # (batch,)
    tgt_in: torch.Tensor  # (batch, tgt_time): <eos> + target
    tgt_out: torch.Tensor  # (batch, tgt_time): target + <eos>, <pad> after

    @property
    def n_target_tokens(self) -> int:
        return int((self.tgt_out != PAD_ID).sum())

    def to(self, device: torch.device | str) -> PairBatch:
        return PairBatch(*(t.to(device) for t in (self.src, self.src_lengths, self.tgt_in, self.tgt_out)))


def make_batch(sources: list[list[int]], targets: list[list[int]]) -> PairBatch:
    """Pad sources and `target + <eos>` of a list of pairs into a `PairBatch`."""
    tgt_out = pad_sequences([t + [EOS_ID] for t in targets])
    return PairBatch(
        src=pad_sequences(sources),
        src_lengths=torch.tensor([len(s) for s in sources], dtype=torch.long),
        tgt_in=teacher_inputs(tgt_out),
        tgt_out=tgt_out,
    )


class PairBatches(LengthBatches):
    """Pairs cut into batches of similar length (source + target), in a fresh order every epoch fixed by (seed, epoch).

    The order is `charrnn.core.batching.LengthBatches`'; a resumed run continues exactly where it stopped.
    """

    def __init__(self, pairs: EncodedPairs, batch_size: int, seed: int = 0, shuffle: bool = True) -> None:
        if len(pairs) == 0:
            raise CharRNNError("No pair is left to train on after tokenizing (check the data and --max-length).")
        lengths = [len(s) + len(t) for s, t in zip(pairs.sources, pairs.targets, strict=True)]
        super().__init__(lengths, batch_size, seed, shuffle)
        self.pairs = pairs

    def batch(self, epoch: int, index: int) -> PairBatch:
        """Batch `index` of `epoch`, on the CPU."""
        rows = self.order(epoch)[index]
        return make_batch([self.pairs.sources[i] for i in rows], [self.pairs.targets[i] for i in rows])
