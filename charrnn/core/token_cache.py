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

Labelled examples (`charrnn.labelled`) are cached the same way, one folder per part (training,
validation) under the same root:

    examples-<key>/  tokens.bin    the ids of every example, end to end (no <eos> between them)
                     offsets.bin   little-endian uint64: where each example starts in tokens.bin, then the end
                     labels.bin    little-endian uint32: each example's label index
                     header.json   {"dtype", "tokens", "examples", "labels", "tokenizer", "sha256", ...}

An examples key hashes the examples themselves (a sha256 of every text and label index, in order,
recorded in the header), the label names and the tokenizer's hash: the texts are read anyway (the
validation split is by distinct text), so a warm cache spares only the tokenizing, and an edited data
set gets a new cache. Its header also records the sha256 of its three files, checked before reuse.

A cache is data, not trust. Both headers record a sha256 of every corpus file, hashed during the
streaming pass that reads it anyway, and the time the pass began; a cache is re-hashed against its
files when a file's ctime is later than that (its bytes may have changed with the size and mtime put
back: `touch -r`), and always with `charrnn prepare --verify`. Before a cache is reused it is
validated as a run file is: regular files only (never a link, FIFO or device), header.json's fields
and types, tokens.bin's size against the header's count and dtype, every id below the vocabulary
size, the tokenizer files against their recorded sha256. A cache that does not validate is rebuilt,
with a note naming it and why.

Memory stays bounded: files are read in chunks of whole lines; the vocabulary is counted in the same
way (word level keeps at most MAX_DISTINCT units, pruning the rarest, which only affects units far
below any useful --vocab-size); sentencepiece trains on a sample of at most SAMPLE_BYTES of lines
taken evenly across the corpus.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from charrnn.core import safeio
from charrnn.core.config import TokenizerConfig
from charrnn.core.corpus import read_chunks, total_bytes
from charrnn.core.errors import CharRNNError
from charrnn.core.special_tokens import EOS_ID, SPECIALS
from charrnn.core.tokenizers import (
    SENTENCEPIECE_MODEL,
    TOKENIZER_JSON,
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
OFFSETS_FILE = "offsets.bin"  # an examples cache: where each example starts in tokens.bin, then the end
LABELS_FILE = "labels.bin"  # an examples cache: each example's label index
OFFSET_DTYPE = np.dtype("<u8")
LABEL_DTYPE = np.dtype("<u4")
EXAMPLES_PREFIX = "examples-"
EXAMPLES_PER_WRITE = 1 << 14  # examples are encoded and written this many at a time
CACHE_FORMAT = 2  # 2: the corpus files' sha256 and the tokenizer files' sha256 are in header.json
MAX_HEADER_BYTES = 256 << 20  # header.json lists every file of the corpus: generous, but bounded
TOKEN_DTYPES = ("|u1", "<u2", "<u4")
SIGNATURE_BYTES = 1 << 20  # the first and last MB of each file are hashed into its signature
MAX_TOKENIZER_BYTES = 1 << 30  # as for a run's tokenizer files
MAX_DISTINCT = 4_000_000  # word-level counting keeps at most this many distinct units
SAMPLE_BYTES = 64 << 20  # sentencepiece trains on at most about this much text

PARALLEL_BYTES = 32 << 20  # word-level corpora at least this big are counted and encoded by several processes
MAX_WORKERS = 8

Progress = Callable[[str, int, int], None]  # (phase, bytes done, bytes in all)
Note = Callable[[str], None]  # told why a cache is rebuilt (the CLI shows it; the library never prints)


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

    def ids(self, mapped: bool = False) -> np.ndarray:
        """The ids: read into memory when they are small (at most IN_MEMORY_BYTES and an eighth of the free
        memory), so that another process truncating the cache cannot touch them; a read-only memory map
        otherwise, or when `mapped` (no copy in memory; pages are read as slices are used).
        """
        if self.n_tokens == 0:
            return np.zeros(0, dtype=self.header["dtype"])
        path, dtype = self.folder / TOKENS_FILE, np.dtype(self.header["dtype"])
        size = self.n_tokens * dtype.itemsize
        if not mapped and size <= in_memory_limit():
            with os.fdopen(safeio.open_regular(path, follow=False), "rb") as handle:
                data = handle.read(size + 1)
            if len(data) != size:
                raise CharRNNError(f"{path} changed while it was read; run the command again to rebuild it.")
            return np.frombuffer(data, dtype=dtype)
        return np.memmap(path, dtype=dtype, mode="r", shape=(self.n_tokens,))

    @property
    def size_bytes(self) -> int:
        return (self.folder / TOKENS_FILE).stat().st_size


@dataclass(eq=False)  # arrays: compared by identity
class ExampleFile(TokenFile):
    """Prepared labelled examples: the ids of all of them end to end (`ids`), where each starts, its label."""

    offsets: np.ndarray  # (examples + 1,) int64: example i is ids()[offsets[i] : offsets[i + 1]]
    labels: np.ndarray  # (examples,) int64 label indices

    @property
    def n_examples(self) -> int:
        return len(self.labels)


IN_MEMORY_BYTES = 256 << 20  # token files up to this size are read into memory rather than memory-mapped


def in_memory_limit() -> int:
    """The largest token file read into memory: IN_MEMORY_BYTES, or an eighth of the free memory if less."""
    from charrnn.core.memory import available_bytes

    free = available_bytes()
    return IN_MEMORY_BYTES if free is None else min(IN_MEMORY_BYTES, free // 8)


class _Meter:
    """Calls `progress(phase, done, total)` as bytes are read."""

    def __init__(self, phase: str, total: int, progress: Progress | None) -> None:
        self.phase, self.total, self.done, self.progress = phase, total, 0, progress

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.phase, self.done, self.total)


def build_vocabulary(
    files: list[Path],
    config: TokenizerConfig,
    encoding: str,
    errors: str,
    progress: Progress | None = None,
    hashes: list[dict[str, Any]] | None = None,
) -> Tokenizer:
    """The tokenizer `config` asks for, built from `files` in one streaming pass with bounded memory.

    `hashes`, when given, receives each file's path, size and sha256 (of the bytes this pass read).
    """
    config.validate()
    meter = _Meter("vocabulary", total_bytes(files), progress)
    digests = {path: hashlib.sha256() for path in files}

    def read(path: Path) -> Iterator[str]:
        yield from read_chunks(
            path, encoding, errors, on_bytes=meter, digest=digests[path], split_long_lines=config.level == "char"
        )

    tokenizer = _build_vocabulary(files, config, read)
    if hashes is not None:
        hashes.extend(_file_entry(path, digests[path]) for path in files)
    return tokenizer


def _file_entry(path: Path, digest: Any) -> dict[str, Any]:
    """What header.json records of a corpus file: resolved path, size and sha256 of the bytes read."""
    return {"path": str(path.resolve()), "size": path.stat().st_size, "sha256": digest.hexdigest()}


def _build_vocabulary(
    files: list[Path], config: TokenizerConfig, read: Callable[[Path], Iterator[str]]
) -> Tokenizer:
    if config.level == "subword":
        total = sum(path.stat().st_size for path in files)
        stride = max(1, -(-total // SAMPLE_BYTES))  # every stride-th chunk goes into the sample
        sample: list[str] = []
        index = 0
        for path in files:
            for text in read(path):
                if index % stride == 0:
                    sample.extend(text.split("\n"))
                index += 1
        return SubwordTokenizer.train_on_lines(sample, config)
    counts: Counter[str] = Counter()
    if config.level == "word":
        pieces = (text for path in files for text in read(path))
        count = functools.partial(_count_words, config.lowercase)
        for found in _in_order(count, pieces, _workers("word", total_bytes(files))):
            counts.update(found)
            if len(counts) > MAX_DISTINCT:
                counts = Counter(dict(counts.most_common(MAX_DISTINCT // 2)))
    for path in files if config.level == "char" else []:
        for text in read(path):
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
    built_ns = time.time_ns()  # a file changed after this (its ctime) is re-hashed when the cache is reused
    workers = _workers(tokenizer.level, meter.total)
    try:
        with temp.open("wb") as out:
            for path in files:
                count = 0
                ends: list[bool] = []  # whether each piece ends with a line break
                digest = hashlib.sha256()

                def pieces(path: Path = path, ends: list[bool] = ends, digest: Any = digest) -> Iterator[str]:
                    split = tokenizer.level == "char"  # a line too long for memory: split (char) or refused
                    for text in read_chunks(
                        path, encoding, errors, on_bytes=meter, digest=digest, split_long_lines=split
                    ):
                        ends.append(text.endswith("\n"))
                        yield text

                for ids in _in_order(encode, pieces(), workers):
                    ids.astype(dtype).tofile(out)
                    count += len(ids)
                if ends and not ends[-1]:  # the file's last line has no line break: it still ends with <eos>
                    np.array([EOS_ID], dtype=dtype).tofile(out)
                    count += 1
                per_file.append({**_file_entry(path, digest), "tokens": count})
        os.replace(temp, folder / TOKENS_FILE)
    except BaseException:  # an error, Ctrl-C or SIGTERM: never leave the temporary file behind
        temp.unlink(missing_ok=True)
        raise
    return {
        "format": CACHE_FORMAT,
        "dtype": dtype.str,
        "tokens": sum(f["tokens"] for f in per_file),
        "files": per_file,
        "vocab_size": tokenizer.vocab_size,
        "level": tokenizer.level,
        "bytes": meter.total,
        "seconds": time.perf_counter() - started,
        "built_ns": built_ns,
    }


def _writable(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CharRNNError(
            f"Cannot create the token cache folder {root} ({exc.strerror}); pass --cache-dir to put it elsewhere."
        ) from None
    return root


def _reuse(
    name: str, root: Path, old_roots: tuple[Path, ...], validate: Callable[[Path], Any], note: Note | None
) -> Any:
    """The validated cache folder `name`: from `root`, then `old_roots` (None if none validates).

    A cache in `root` that does not validate is put away (`_rebuilding`, which `note` tells); one in an old
    root is left as it is and skipped, as nothing new is written there.
    """
    for where in (root, *old_roots):
        folder = where / name
        if not _exists(folder / HEADER_FILE):
            continue
        try:
            return validate(folder)
        except CharRNNError as exc:
            if where == root:
                _rebuilding(folder, str(exc), note)
    return None


def cached_tokenizer(
    files: list[Path],
    config: TokenizerConfig,
    encoding: str,
    errors: str,
    root: Path,
    progress: Progress | None = None,
    note: Note | None = None,
    verify: bool = False,
    old_roots: tuple[Path, ...] = (),
) -> Tokenizer:
    """The tokenizer built from `files` under `config`: from the cache (`root`, then `old_roots`; validated),
    or built now and cached in `root`.

    A cache that does not validate, or whose corpus changed (see the module docstring), is rebuilt and
    `note` says why; `verify` re-hashes every corpus file whatever its ctime.
    """
    name = f"vocab-{_key(corpus_signature(files), asdict(config), encoding, errors)}"
    found = _reuse(name, root, old_roots, lambda folder: _valid_vocabulary(folder, config, files, verify), note)
    if found is not None:
        return found
    hashes: list[dict[str, Any]] = []
    built_ns = time.time_ns()
    tokenizer = build_vocabulary(files, config, encoding, errors, progress, hashes)
    folder = _writable(root / name)
    written = tokenizer.to_files()
    for file_name, data in written.items():
        _write_atomically(folder / file_name, data)
    _write_json(
        folder / HEADER_FILE,
        {
            "format": CACHE_FORMAT,
            "level": config.level,
            "vocab_size": tokenizer.vocab_size,
            "tokenizer_files": {
                file_name: hashlib.sha256(data).hexdigest() for file_name, data in written.items()
            },
            "files": hashes,
            "built_ns": built_ns,
        },
    )
    return tokenizer


def cached_tokens(
    files: list[Path],
    tokenizer: Tokenizer,
    tokenizer_hash: str,
    encoding: str,
    errors: str,
    root: Path,
    progress: Progress | None = None,
    note: Note | None = None,
    verify: bool = False,
    old_roots: tuple[Path, ...] = (),
) -> TokenFile:
    """The ids of `files` under `tokenizer`: the cached token file (in `root`, then `old_roots`; validated),
    or one written now into `root`.

    A cache that does not validate, or whose corpus changed, is rebuilt and `note` says why; `verify`
    re-hashes every corpus file whatever its ctime.
    """
    name = f"tokens-{_key(corpus_signature(files), tokenizer_hash, encoding, errors)}"
    found = _reuse(
        name, root, old_roots, lambda folder: _valid_tokens(folder, tokenizer, tokenizer_hash, files, verify), note
    )
    if found is not None:
        return found
    folder = _writable(root / name)
    done = folder / HEADER_FILE
    _remove_stale_temporaries(folder)
    header = encode_files(files, tokenizer, folder, encoding, errors, progress)
    header["tokenizer"] = tokenizer_hash
    _write_json(done, header)
    return TokenFile(folder, header, reused=False)


def examples_digest(texts: Sequence[str], labels: Sequence[int]) -> str:
    """The sha256 of labelled examples: every text (UTF-8, its length first) and label index, in order."""
    digest = hashlib.sha256()
    for text, label in zip(texts, labels, strict=True):
        raw = text.encode("utf-8", "surrogatepass")
        digest.update(b"%d %d\n" % (int(label), len(raw)))
        digest.update(raw)
    return digest.hexdigest()


def cached_examples(
    texts: Sequence[str],
    labels: Sequence[int],
    label_names: Sequence[str],
    tokenizer: Tokenizer,
    tokenizer_hash: str,
    root: Path,
    origin: str = "",
    note: Note | None = None,
) -> ExampleFile:
    """The ids of labelled examples (each text without `<eos>`, as `encode_line` gives them) and their label
    indices: the cached examples file in `root` (validated), or one written there now.

    `labels` are indices into `label_names`; `origin` (where the examples were read from) is recorded for
    `charrnn cache list`. A cache that does not validate is rebuilt and `note` says why.
    """
    names = list(label_names)
    digest = examples_digest(texts, labels)
    name = f"{EXAMPLES_PREFIX}{_key(digest, names, tokenizer_hash)}"

    def valid(folder: Path) -> ExampleFile:
        return _valid_examples(folder, tokenizer, tokenizer_hash, digest, len(texts), names)

    found = _reuse(name, root, (), valid, note)
    if found is not None:
        return found
    folder = _writable(root / name)
    _remove_stale_temporaries(folder)
    header, offsets, label_ids = encode_examples_file(texts, labels, tokenizer, folder)
    header.update({"examples": len(texts), "labels": names, "tokenizer": tokenizer_hash, "sha256": digest})
    header["origin"] = origin
    _write_json(folder / HEADER_FILE, header)
    return ExampleFile(folder, header, False, offsets, label_ids)


def encode_examples_file(
    texts: Sequence[str], labels: Sequence[int], tokenizer: Tokenizer, folder: Path
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Write the ids of `texts` end to end into `folder`/tokens.bin, their starts into offsets.bin and `labels`
    into labels.bin; return the header (not yet written, without the examples' own fields), offsets and labels."""
    dtype = token_dtype(tokenizer.vocab_size)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    label_ids = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(label_ids) != len(texts):
        raise ValueError("one label index per text")
    started = time.perf_counter()
    built_ns = time.time_ns()
    digest = hashlib.sha256()
    temp = folder / f"{TOKENS_FILE}.{os.getpid()}.tmp"
    try:
        with temp.open("wb") as out:
            for first in range(0, len(texts), EXAMPLES_PER_WRITE):
                encoded = [tokenizer.encode_line(text) for text in texts[first : first + EXAMPLES_PER_WRITE]]
                lengths = np.asarray([len(ids) for ids in encoded], dtype=np.int64)
                offsets[first + 1 : first + 1 + len(encoded)] = offsets[first] + np.cumsum(lengths)
                flat = np.fromiter(
                    itertools.chain.from_iterable(encoded), dtype=np.int64, count=int(lengths.sum())
                )
                data = flat.astype(dtype).tobytes()
                digest.update(data)
                out.write(data)
        os.replace(temp, folder / TOKENS_FILE)
    except BaseException:  # an error, Ctrl-C or SIGTERM: never leave the temporary file behind
        temp.unlink(missing_ok=True)
        raise
    hashes = {TOKENS_FILE: digest.hexdigest()}
    for file_name, values in (
        (OFFSETS_FILE, offsets.astype(OFFSET_DTYPE)),
        (LABELS_FILE, label_ids.astype(LABEL_DTYPE)),
    ):
        data = values.tobytes()
        _write_atomically(folder / file_name, data)
        hashes[file_name] = hashlib.sha256(data).hexdigest()
    header = {
        "format": CACHE_FORMAT,
        "dtype": dtype.str,
        "tokens": int(offsets[-1]),
        "vocab_size": tokenizer.vocab_size,
        "level": tokenizer.level,
        "file_sha256": hashes,
        "seconds": time.perf_counter() - started,
        "built_ns": built_ns,
    }
    return header, offsets, label_ids


# --- validating a cache before it is reused ---------------------------------------------------------------------


class _Invalid(CharRNNError):
    """Why a cache folder cannot be reused (it is then rebuilt)."""


def _exists(path: Path) -> bool:
    """Whether anything (a file, a link, a FIFO...) is at `path`."""
    return os.path.lexists(path)


def _read_cache_file(path: Path, limit: int) -> bytes:
    """The bytes of a cache file: a regular file (not a link, FIFO or device) of at most `limit` bytes."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        raise _Invalid(f"{path.name} is missing ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise _Invalid(f"{path.name} is not a regular file")
    try:
        return safeio.read_regular(path, limit, "cache file")
    except CharRNNError as exc:
        raise _Invalid(str(exc)) from None


def _read_header(folder: Path) -> dict[str, Any]:
    raw = _read_cache_file(folder / HEADER_FILE, MAX_HEADER_BYTES)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _Invalid(f"{HEADER_FILE} is not valid JSON") from None
    if not isinstance(header, dict):
        raise _Invalid(f"{HEADER_FILE} is not a JSON object")
    if header.get("format") != CACHE_FORMAT:
        raise _Invalid(f"it was made by another charrnn version (cache format {header.get('format')!r})")
    return header


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _check_corpus(header: dict[str, Any], files: list[Path], verify: bool, with_tokens: bool) -> None:
    """The header's record of the corpus files: their types, and each file's sha256 where it may have changed."""
    entries = header.get("files")
    built_ns = header.get("built_ns")
    if not isinstance(entries, list) or len(entries) != len(files) or not _count(built_ns):
        raise _Invalid(f"{HEADER_FILE} does not list the corpus files")
    for entry, path in zip(entries, files, strict=True):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and _count(entry.get("size"))
            and isinstance(entry.get("sha256"), str)
            and (_count(entry.get("tokens")) or not with_tokens)
        ):
            raise _Invalid(f"{HEADER_FILE} has a damaged entry for {path}")
        info = path.stat()
        if entry["size"] != info.st_size or entry["path"] != str(path.resolve()):
            raise _Invalid(f"{path} is not the file it was made from")
        changed = verify or info.st_ctime_ns >= built_ns  # changed (or touched) since the cache was made
        if changed and file_sha256(path) != entry["sha256"]:
            raise _Invalid(f"{path} changed since it was made (its sha256 differs)")


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with os.fdopen(safeio.open_regular(path), "rb") as handle:
        while block := handle.read(SIGNATURE_BYTES * 4):
            digest.update(block)
    return digest.hexdigest()


def _valid_vocabulary(folder: Path, config: TokenizerConfig, files: list[Path], verify: bool) -> Tokenizer:
    header = _read_header(folder)
    recorded = header.get("tokenizer_files")
    if not isinstance(recorded, dict) or not recorded or not all(isinstance(v, str) for v in recorded.values()):
        raise _Invalid(f"{HEADER_FILE} does not record the tokenizer files")
    if not set(recorded) <= {TOKENIZER_JSON, SENTENCEPIECE_MODEL}:
        raise _Invalid(f"{HEADER_FILE} names unknown tokenizer files")
    found = {}
    for name, digest in recorded.items():
        data = _read_cache_file(folder / name, MAX_TOKENIZER_BYTES)
        if hashlib.sha256(data).hexdigest() != digest:
            raise _Invalid(f"{name} is not the file that was cached (its sha256 differs)")
        found[name] = data
    _check_corpus(header, files, verify, with_tokens=False)
    try:
        tokenizer = tokenizer_from_files(found)
    except CharRNNError as exc:
        raise _Invalid(str(exc)) from None
    if tokenizer.level != config.level or tokenizer.vocab_size != header.get("vocab_size"):
        raise _Invalid("its tokenizer does not match its header")
    return tokenizer


def _valid_tokens(
    folder: Path, tokenizer: Tokenizer, tokenizer_hash: str, files: list[Path], verify: bool
) -> TokenFile:
    header = _read_header(folder)
    dtype, tokens, entries = header.get("dtype"), header.get("tokens"), header.get("files")
    if dtype not in TOKEN_DTYPES or np.dtype(dtype) != token_dtype(tokenizer.vocab_size):
        raise _Invalid(f"{HEADER_FILE} has dtype {str(dtype)[:20]!r}, not the one this vocabulary needs")
    if header.get("vocab_size") != tokenizer.vocab_size or header.get("tokenizer") != tokenizer_hash:
        raise _Invalid("it was made with another tokenizer")
    if not _count(tokens):
        raise _Invalid(f"{HEADER_FILE} has a damaged token count {str(tokens)[:20]}")
    seconds = header.get("seconds")
    if not _count(header.get("bytes")) or not (isinstance(seconds, int | float) and 0 <= seconds < float("inf")):
        raise _Invalid(f"{HEADER_FILE} has a damaged size or time")
    _check_corpus(header, files, verify, with_tokens=True)
    if sum(entry["tokens"] for entry in entries) != tokens:
        raise _Invalid(f"{HEADER_FILE}'s per-file counts do not add up to its token count")
    _check_ids(folder, header, tokenizer.vocab_size)
    return TokenFile(folder, header, reused=True)


def _check_ids(folder: Path, header: dict[str, Any], vocab_size: int) -> None:
    """tokens.bin: a regular file of the header's count of ids of its dtype, every id below `vocab_size`."""
    tokens, dtype = header["tokens"], np.dtype(header["dtype"])
    path = folder / TOKENS_FILE
    try:
        info = os.lstat(path)
    except OSError:
        raise _Invalid(f"{TOKENS_FILE} is missing") from None
    if not stat.S_ISREG(info.st_mode):
        raise _Invalid(f"{TOKENS_FILE} is not a regular file")
    if info.st_size != tokens * dtype.itemsize:
        needed = tokens * dtype.itemsize
        raise _Invalid(
            f"{TOKENS_FILE} is {info.st_size:,} bytes but the header's {tokens:,} tokens need {needed:,}"
        )
    if np.iinfo(dtype).max >= vocab_size:  # an id the dtype can hold may be out of range
        ids = TokenFile(folder, header, reused=True).ids(mapped=True)
        for start in range(0, len(ids), 1 << 24):
            if int(ids[start : start + (1 << 24)].max()) >= vocab_size:
                raise _Invalid(f"{TOKENS_FILE} holds ids outside the vocabulary of {vocab_size}")


def _read_array(folder: Path, name: str, dtype: np.dtype, count: int) -> np.ndarray:
    """A small array file of an examples cache, read into memory: exactly `count` values of `dtype`."""
    size = count * dtype.itemsize
    data = _read_cache_file(folder / name, size)
    if len(data) != size:
        raise _Invalid(f"{name} is {len(data):,} bytes but the header's {count:,} entries need {size:,}")
    return np.frombuffer(data, dtype=dtype)


def _valid_examples(
    folder: Path,
    tokenizer: Tokenizer,
    tokenizer_hash: str,
    digest: str,
    n_examples: int,
    label_names: list[str],
) -> ExampleFile:
    header = _read_header(folder)
    dtype, tokens = header.get("dtype"), header.get("tokens")
    if dtype not in TOKEN_DTYPES or np.dtype(dtype) != token_dtype(tokenizer.vocab_size):
        raise _Invalid(f"{HEADER_FILE} has dtype {str(dtype)[:20]!r}, not the one this vocabulary needs")
    if header.get("vocab_size") != tokenizer.vocab_size or header.get("tokenizer") != tokenizer_hash:
        raise _Invalid("it was made with another tokenizer")
    if header.get("sha256") != digest or header.get("examples") != n_examples:
        raise _Invalid("it was made from other examples")
    if header.get("labels") != label_names:
        raise _Invalid("it was made with other labels")
    if not _count(tokens):
        raise _Invalid(f"{HEADER_FILE} has a damaged token count {str(tokens)[:20]}")
    recorded = header.get("file_sha256")
    names = (TOKENS_FILE, OFFSETS_FILE, LABELS_FILE)
    if not isinstance(recorded, dict) or not all(isinstance(recorded.get(name), str) for name in names):
        raise _Invalid(f"{HEADER_FILE} does not record the sha256 of its files")
    _check_ids(folder, header, tokenizer.vocab_size)
    offsets = _read_array(folder, OFFSETS_FILE, OFFSET_DTYPE, n_examples + 1)
    labels = _read_array(folder, LABELS_FILE, LABEL_DTYPE, n_examples)
    for name, data in ((OFFSETS_FILE, offsets), (LABELS_FILE, labels)):
        if hashlib.sha256(data.tobytes()).hexdigest() != recorded[name]:
            raise _Invalid(f"{name} is not the file that was cached (its sha256 differs)")
    if file_sha256(folder / TOKENS_FILE) != recorded[TOKENS_FILE]:
        raise _Invalid(f"{TOKENS_FILE} is not the file that was cached (its sha256 differs)")
    starts = offsets.astype(np.int64)  # values past 2**63 become negative, and are refused below
    if starts[0] != 0 or starts[-1] != tokens or bool((np.diff(starts) < 0).any()):
        raise _Invalid(f"{OFFSETS_FILE} does not cut {TOKENS_FILE} into examples")
    if n_examples and int(labels.max()) >= len(label_names):
        raise _Invalid(f"{LABELS_FILE} holds label indices beyond the {len(label_names)} labels")
    return ExampleFile(folder, header, True, starts, labels.astype(np.int64))


def _rebuilding(folder: Path, why: str, note: Note | None) -> None:
    """Say why the cache in `folder` is rebuilt, and put its header away so that nothing trusts it meanwhile."""
    if note is not None:
        note(f"token cache {folder} is rebuilt: {why}")
    for name in os.listdir(folder) if folder.is_dir() and not folder.is_symlink() else []:
        target = folder / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                target.unlink()
    if folder.is_symlink() or (_exists(folder) and not folder.is_dir()):
        folder.unlink()


def _remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files of builds whose process is gone (killed with SIGKILL, say)."""
    for temp in folder.glob("*.tmp"):
        pid = temp.name.rsplit(".", 2)[-2] if temp.name.count(".") >= 2 else ""
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                temp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a cache file through a temporary file and a rename: never half a file, never through a link."""
    temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    _write_atomically(path, json.dumps(payload, indent=1).encode("utf-8"))
