"""Token caches: a corpus tokenized once, in one streaming pass, into a flat file of ids that training memory-maps.

A cache is a folder under the cache root (`--cache-dir`, by default tokens/ in the user cache folder,
`charrnn.core.user_cache`; caches that older versions wrote into `.charrnn-cache/` beside the corpus
are still read from there):

    vocab-<key>/   tokenizer.json (+ tokenizer.model)   the tokenizer a fresh run builds from the corpus
    tokens-<key>/  tokens.bin                           ids of every file in order, each line then <eos>,
                                                        one flat little-endian uint8/uint16/uint32 array
                   header.json                          {"dtype", "tokens", "files": [...], "tokenizer", ...}

    tokens.bin:  | file 0: a b <eos> c <eos> | file 1: d e <eos> | ...      (header.json: tokens per file)

A vocab key hashes the corpus signature and the tokenizer settings; a tokens key hashes the corpus
signature and the tokenizer's own hash. The corpus signature lists, per file, its resolved path,
size, modification time and a sha256 of its first and last MB: an edited corpus gets a new cache,
an untouched one is reused by later runs and by --resume. header.json is written last, so a killed
preparation leaves no cache that looks complete.

Memory stays bounded: files are read in chunks of whole lines; the vocabulary is counted in the same
way (word level keeps at most MAX_DISTINCT units, pruning the rarest, which only affects units far
below any useful --vocab-size); sentencepiece trains on a sample of at most SAMPLE_BYTES of lines
taken evenly across the corpus.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from charrnn.core.config import TokenizerConfig
from charrnn.core.corpus import read_chunks, total_bytes
from charrnn.core.errors import CharRNNError
from charrnn.core.special_tokens import EOS_ID, SPECIALS
from charrnn.core.tokenizers import (
    CharTokenizer,
    SubwordTokenizer,
    Tokenizer,
    VocabTokenizer,
    WordTokenizer,
    tokenizer_from_files,
)

CACHE_DIR_NAME = ".charrnn-cache"
TOKENS_FILE = "tokens.bin"
HEADER_FILE = "header.json"
CACHE_FORMAT = 1
SIGNATURE_BYTES = 1 << 20  # the first and last MB of each file are hashed into its signature
MAX_DISTINCT = 4_000_000  # word-level counting keeps at most this many distinct units
SAMPLE_BYTES = 64 << 20  # sentencepiece trains on at most about this much text

PARALLEL_BYTES = 32 << 20  # word-level corpora at least this big are counted and encoded by several processes
MAX_WORKERS = 8

Progress = Callable[[str, int, int], None]  # (phase, bytes done, bytes in all)


def _workers(level: str, n_bytes: int) -> int:
    """How many processes count and encode a corpus: several for a large word-level one, else 1."""
    if level != "word" or n_bytes < PARALLEL_BYTES:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, MAX_WORKERS))


def _in_order(function: Callable[[str], Any], pieces: Iterator[str], workers: int) -> Iterator[Any]:
    """`function` of each piece, in order; with several workers, `2 x workers` pieces at a time in a pool."""
    if workers <= 1:
        yield from map(function, pieces)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        while batch := list(itertools.islice(pieces, 2 * workers)):  # bounded: never the whole corpus at once
            yield from pool.map(function, batch)


def _count_words(lowercase: bool, text: str) -> Counter[str]:
    return Counter(WordTokenizer(list(SPECIALS)).split(text.lower() if lowercase else text))


def default_cache_root() -> Path:
    """Where token caches are written unless --cache-dir says otherwise: tokens/ in the user cache folder."""
    from charrnn.core.user_cache import cache_folder

    return cache_folder("tokens")


def old_cache_root(corpus: list[Path]) -> Path:
    """Where versions before 0.3 wrote token caches: `.charrnn-cache/` in the first corpus folder (or beside
    the first file). Caches found there are still read; nothing new is written there."""
    first = corpus[0]
    return (first if first.is_dir() else first.resolve().parent) / CACHE_DIR_NAME


def _find(name: str, roots: tuple[Path, ...]) -> Path | None:
    """The first complete cache folder `name` (its header written) under `roots`."""
    for root in roots:
        if (root / name / HEADER_FILE).is_file():
            return root / name
    return None


def corpus_signature(files: list[Path]) -> list[dict[str, Any]]:
    """Per file: resolved path, size, mtime and a hash of its first and last MB (what a cache key covers)."""
    signature = []
    for path in files:
        stat = path.stat()
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            digest.update(handle.read(SIGNATURE_BYTES))
            if stat.st_size > SIGNATURE_BYTES:
                handle.seek(max(stat.st_size - SIGNATURE_BYTES, SIGNATURE_BYTES))
                digest.update(handle.read(SIGNATURE_BYTES))
        signature.append(
            {
                "path": str(path.resolve()),
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "sha256_ends": digest.hexdigest()[:16],
            }
        )
    return signature


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:20]


def data_fingerprint(pieces: Iterable[np.ndarray]) -> str:
    """A short hash of a stream of ids given in pieces, to check that a resumed run reads the same data.

    sha256 of the ids as int32 bytes, in order: the same however the stream is cut into pieces.
    """
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(np.asarray(piece).astype(np.int32).tobytes())
    return digest.hexdigest()[:16]


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype holding every id: uint8 up to 256 entries, uint16 up to 65,536, else uint32."""
    if vocab_size <= 1 << 8:
        return np.dtype("<u1")
    if vocab_size <= 1 << 16:
        return np.dtype("<u2")
    return np.dtype("<u4")


@dataclass
class TokenFile:
    """A prepared corpus: the memory-mapped ids and what its header says."""

    folder: Path
    header: dict[str, Any]
    reused: bool  # found in the cache rather than built now

    @property
    def n_tokens(self) -> int:
        return int(self.header["tokens"])

    @property
    def key(self) -> str:
        return self.folder.name

    def ids(self) -> np.ndarray:
        """The ids as a read-only memory map (no copy in memory; pages are read as slices are used)."""
        if self.n_tokens == 0:
            return np.zeros(0, dtype=self.header["dtype"])
        return np.memmap(self.folder / TOKENS_FILE, dtype=self.header["dtype"], mode="r", shape=(self.n_tokens,))

    @property
    def size_bytes(self) -> int:
        return (self.folder / TOKENS_FILE).stat().st_size


class _Meter:
    """Calls `progress(phase, done, total)` as bytes are read."""

    def __init__(self, phase: str, total: int, progress: Progress | None) -> None:
        self.phase, self.total, self.done, self.progress = phase, total, 0, progress

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.phase, self.done, self.total)


def build_vocabulary(
    files: list[Path], config: TokenizerConfig, encoding: str, errors: str, progress: Progress | None = None
) -> Tokenizer:
    """The tokenizer `config` asks for, built from `files` in one streaming pass with bounded memory."""
    config.validate()
    meter = _Meter("vocabulary", total_bytes(files), progress)
    if config.level == "subword":
        stride = max(1, -(-meter.total // SAMPLE_BYTES))  # every stride-th chunk goes into the sample
        sample: list[str] = []
        index = 0
        for path in files:
            for text in read_chunks(path, encoding, errors, on_bytes=meter):
                if index % stride == 0:
                    sample.extend(text.split("\n"))
                index += 1
        return SubwordTokenizer.train_on_lines(sample, config)
    counts: Counter[str] = Counter()
    if config.level == "word":
        pieces = (text for path in files for text in read_chunks(path, encoding, errors, on_bytes=meter))
        count = functools.partial(_count_words, config.lowercase)
        for found in _in_order(count, pieces, _workers("word", meter.total)):
            counts.update(found)
            if len(counts) > MAX_DISTINCT:
                counts = Counter(dict(counts.most_common(MAX_DISTINCT // 2)))
    for path in files if config.level == "char" else []:
        for text in read_chunks(path, encoding, errors, on_bytes=meter):
            if config.lowercase:
                text = text.lower()
            numbers = np.bincount(np.frombuffer(text.encode("utf-32-le"), dtype="<u4"))
            counts.update({chr(v): int(numbers[v]) for v in np.flatnonzero(numbers).tolist()})
    counts.pop("\n", None)
    cls: type[VocabTokenizer] = CharTokenizer if config.level == "char" else WordTokenizer
    return cls.from_counts(counts, config)


def encode_files(
    files: list[Path],
    tokenizer: Tokenizer,
    folder: Path,
    encoding: str,
    errors: str,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the ids of `files` into `folder`/tokens.bin and return its header (not yet written)."""
    dtype = token_dtype(tokenizer.vocab_size)
    encode = tokenizer.bulk_encoder()
    meter = _Meter("tokens", total_bytes(files), progress)
    per_file = []
    temp = folder / f"{TOKENS_FILE}.{os.getpid()}.tmp"
    started = time.perf_counter()
    workers = _workers(tokenizer.level, meter.total)
    with temp.open("wb") as out:
        for path in files:
            count = 0
            ends: list[bool] = []  # whether each piece ends with a line break

            def pieces(path: Path = path, ends: list[bool] = ends) -> Iterator[str]:
                for text in read_chunks(path, encoding, errors, on_bytes=meter):
                    ends.append(text.endswith("\n"))
                    yield text

            for number, ids in enumerate(_in_order(encode, pieces(), workers)):
                if not ends[number]:
                    ids = np.append(ids, np.uint32(EOS_ID))  # the file's last line has no newline
                ids.astype(dtype).tofile(out)
                count += len(ids)
            per_file.append({"path": str(path.resolve()), "tokens": count})
    os.replace(temp, folder / TOKENS_FILE)
    return {
        "format": CACHE_FORMAT,
        "dtype": dtype.str,
        "tokens": sum(f["tokens"] for f in per_file),
        "files": per_file,
        "vocab_size": tokenizer.vocab_size,
        "level": tokenizer.level,
        "bytes": meter.total,
        "seconds": time.perf_counter() - started,
    }


def _writable(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CharRNNError(
            f"Cannot create the token cache folder {root} ({exc.strerror}); pass --cache-dir to put it elsewhere."
        ) from None
    return root


def cached_tokenizer(
    files: list[Path],
    config: TokenizerConfig,
    encoding: str,
    errors: str,
    root: Path,
    progress: Progress | None = None,
    old_roots: tuple[Path, ...] = (),
) -> Tokenizer:
    """The tokenizer built from `files` under `config`: from the cache (`root`, then `old_roots`), or built
    now and cached in `root`."""
    name = f"vocab-{_key(corpus_signature(files), asdict(config), encoding, errors)}"
    found = _find(name, (root, *old_roots))
    if found is not None:
        files_found = {p.name: p.read_bytes() for p in found.iterdir() if p.name != HEADER_FILE}
        return tokenizer_from_files(files_found)
    tokenizer = build_vocabulary(files, config, encoding, errors, progress)
    folder = _writable(root / name)
    for file_name, data in tokenizer.to_files().items():
        (folder / file_name).write_bytes(data)
    header = {"format": CACHE_FORMAT, "level": config.level, "vocab_size": tokenizer.vocab_size}
    _write_json(folder / HEADER_FILE, {**header, "files": [str(p.resolve()) for p in files]})
    return tokenizer


def cached_tokens(
    files: list[Path],
    tokenizer: Tokenizer,
    tokenizer_hash: str,
    encoding: str,
    errors: str,
    root: Path,
    progress: Progress | None = None,
    old_roots: tuple[Path, ...] = (),
) -> TokenFile:
    """The ids of `files` under `tokenizer`: the cached token file (in `root`, then `old_roots`), or one
    written now into `root`."""
    name = f"tokens-{_key(corpus_signature(files), tokenizer_hash, encoding, errors)}"
    found = _find(name, (root, *old_roots))
    if found is not None:
        header = json.loads((found / HEADER_FILE).read_text(encoding="utf-8"))
        if header.get("format") == CACHE_FORMAT and (found / TOKENS_FILE).is_file():
            return TokenFile(found, header, reused=True)
    folder = _writable(root / name)
    done = folder / HEADER_FILE
    header = encode_files(files, tokenizer, folder, encoding, errors, progress)
    header["tokenizer"] = tokenizer_hash
    _write_json(done, header)
    return TokenFile(folder, header, reused=False)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    os.replace(temp, path)
