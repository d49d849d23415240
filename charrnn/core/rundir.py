"""Run directories, for both models: atomic writes, safetensors weights, JSON everything else, checks on load.

A run directory holds:
  config.json          the run config (tokenizer(s), model, training settings, kind, versions)
  tokenizer.json       the tokenizer (plus tokenizer.model for sentencepiece); seq2seq keeps one
                       per side in source/ and target/
  model.safetensors    the best weights by validation loss (what sample/score/translate load)
  resume.safetensors   the latest training state: weights, optimiser moments, RNG states, the
                       task's carried tensors (the LM's hidden state), counters (tensors + JSON)
  metrics.jsonl        one JSON object per logged step/evaluation
Nothing here is ever unpickled: weights are safetensors, the rest JSON.

Format versions (`charrnn.core.version`): 1 (charrnn before the core/lm/seq2seq layout) and 2 (now).
Version 1 runs are migrated in memory when read (each config class's `migrate`, and
`charrnn.core.resume` for resume files).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from charrnn.core import safeio
from charrnn.core.config import read_json
from charrnn.core.errors import CharRNNError
from charrnn.core.gradnorms import clipped_share
from charrnn.core.tokenizers import SENTENCEPIECE_MODEL, TOKENIZER_JSON, Tokenizer, tokenizer_from_files
from charrnn.core.version import FORMAT_VERSION, READABLE_VERSIONS

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
RESUME_FILE = "resume.safetensors"
EMBEDDING_KEY = "core.embedding.weight"
METRICS_FILE = "metrics.jsonl"
TEMP_PREFIX, TEMP_SUFFIX = ".", ".tmp"


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, whole."""
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException as exc:  # also Ctrl-C: never leave the temporary file behind
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise
    safeio.fsync_directory(path.parent)


def _write_error(path: Path, exc: OSError) -> CharRNNError:
    hint = " (disk full)" if exc.errno == errno.ENOSPC else ""
    return CharRNNError(
        f"Could not write {path}{hint}: {exc.strerror or exc}. The previous version of the file is intact."
    )


def remove_temp_files(run_dir: Path) -> None:
    """Delete temporary files that a killed `atomic_write` left in `run_dir`."""
    for stale in Path(run_dir).glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None) -> None:
    """Atomically write tensors (and JSON metadata) as a safetensors file with a checksum of its data."""
    plain = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    meta = {"json": json.dumps(metadata if metadata is not None else {})}
    draft = save_safetensors_bytes(plain, metadata=meta)  # the data section does not depend on the metadata
    meta["sha256"] = hashlib.sha256(_data_section(draft)).hexdigest()
    atomic_write(path, save_safetensors_bytes(plain, metadata=meta))


def _data_section(raw: bytes) -> bytes:
    return raw[8 + int.from_bytes(raw[:8], "little") :]


MAX_HEADER = 100_000_000  # bytes of safetensors JSON header: far more than any run needs
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _parse_header(path: Path, raw_start: bytes, size: int) -> dict[str, Any]:
    """The JSON header of a safetensors file, checked against the file's size before any data is read.

    Layout: 8 bytes little-endian n, n bytes of JSON, then the data; every tensor's
    [begin, end) offsets lie inside the data, end - begin = prod(shape) * dtype size, and the last
    tensor ends where the file ends.
    """
    damaged = CharRNNError(
        f"{path} is not a valid safetensors file (damaged, truncated, or not written by charrnn); "
        "restore it from a backup or retrain."
    )
    if size < 8 or len(raw_start) < 8:
        raise damaged
    length = int.from_bytes(raw_start[:8], "little")
    if not 2 <= length <= min(MAX_HEADER, size - 8):
        raise damaged
    try:
        header = json.loads(raw_start[8 : 8 + length])
    except (ValueError, RecursionError):
        raise damaged from None
    if not isinstance(header, dict):
        raise damaged
    data_size = size - 8 - length
    covered = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("dtype"), str)
            or entry["dtype"] not in DTYPE_SIZES
        ):
            raise damaged
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < 2**40 for d in shape)):
            raise damaged
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise damaged
        begin, end = offsets
        if not 0 <= begin <= end <= data_size or end - begin != math.prod(shape) * DTYPE_SIZES[entry["dtype"]]:
            raise damaged
        covered = max(covered, end)
    if covered != data_size:  # bytes after the last tensor: padding that would be read for nothing
        raise damaged
    return header


def _header_of(handle: BinaryIO, path: Path) -> tuple[dict[str, Any], bytes, int]:
    """(checked header, the bytes read so far, file size), reading only the length and the JSON header."""
    size = os.fstat(handle.fileno()).st_size
    start = handle.read(8)
    length = int.from_bytes(start, "little") if len(start) == 8 else 0
    start += handle.read(min(length, MAX_HEADER, max(size - 8, 0)))
    return _parse_header(path, start, size), start, size


def _metadata_of(header: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the header's string metadata, the JSON object `save_tensors` stored in it); ValueError/TypeError if malformed."""
    meta = header.get("__metadata__") or {}
    metadata = json.loads(meta["json"]) if "json" in meta else {}
    if not isinstance(metadata, dict):
        raise ValueError("metadata is not a JSON object")
    return meta, metadata


def read_header(path: Path) -> dict[str, Any]:
    """The checked JSON header of safetensors file `path` (names, dtypes, shapes, metadata), without its data.

    Only a regular file is opened (`charrnn.core.safeio`: a FIFO or device is refused at once, never waited
    on); a missing, unreadable or damaged file is a one-line `CharRNNError`.
    """
    path = Path(path)
    try:
        with os.fdopen(safeio.open_regular(path), "rb") as handle:
            return _header_of(handle, path)[0]
    except OSError as exc:
        raise CharRNNError(f"{path}: cannot read ({exc.strerror}).") from None


def check_shapes(
    path: Path,
    header: dict[str, Any],
    expected: dict[str, tuple[int, ...]],
    closed: str | None = None,
    allowed: re.Pattern[str] | None = None,
) -> None:
    """Refuse a file whose header lacks a name in `expected` or declares another shape for it; with
    `closed` (a prefix, "" for every name) also one holding a name under that prefix that `expected`
    lacks, and with `allowed` one holding a name the pattern does not match."""
    names = [name for name in header if name != "__metadata__"]
    unexpected = [
        name
        for name in names
        if (closed is not None and name.startswith(closed) and name not in expected)
        or (allowed is not None and not allowed.fullmatch(name))
    ]
    if unexpected:
        raise CharRNNError(
            f"{path} does not match the model in config.json: it holds tensors the model does not have "
            f"({', '.join(sorted(unexpected)[:3])[:120]}); the weights and config/tokenizer come from different "
            "runs, or the file is damaged."
        )
    missing = sorted(set(expected) - set(header))
    if missing:
        raise CharRNNError(
            f"{path} does not match the model in config.json: missing {missing[:4]}; "
            "the weights and config/tokenizer come from different runs."
        )
    for name, shape in expected.items():
        entry = header.get(name)
        if name.endswith(EMBEDDING_KEY) and isinstance(entry, dict) and entry["shape"][:1] != [shape[0]]:
            raise CharRNNError(
                f"The tokenizer has {shape[0]} entries but {path} has {entry['shape'][0]} embedding "
                "rows; the tokenizer file and the weights come from different runs."
            )
        if isinstance(entry, dict) and tuple(entry["shape"]) != tuple(shape):
            raise CharRNNError(
                f"{path}: {name} has shape {tuple(entry['shape'])} but config.json implies {tuple(shape)}; "
                "the weights and config/tokenizer come from different runs."
            )


def load_tensors(
    path: Path,
    expected: dict[str, tuple[int, ...]] | None = None,
    closed: str | None = None,
    allowed: re.Pattern[str] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file written by `save_tensors`, checking its checksum; never executes anything from it.

    The header is checked against the file size, its names and shapes against `expected` (`closed`,
    `allowed`: see `check_shapes`), and the memory its data needs against what is available, before
    the data is read.
    """
    path = Path(path)
    if not path.exists():
        raise CharRNNError(f"{path} is missing.")
    try:
        with os.fdopen(safeio.open_regular(path), "rb") as handle:
            header, start, size = _header_of(handle, path)
            check_shapes(path, header, expected or {}, closed, allowed)
            _check_memory(path, size)
            raw = start + handle.read(size - len(start))
    except OSError as exc:
        raise CharRNNError(f"{path}: cannot read ({exc.strerror}).") from None
    damaged = CharRNNError(
        f"{path} is not a valid safetensors file (damaged, truncated, or not written by charrnn); "
        "restore it from a backup or retrain."
    )
    try:
        tensors = load_safetensors_bytes(raw)
        meta, metadata = _metadata_of(header)
    except (SafetensorError, ValueError, OverflowError, AttributeError, TypeError, RecursionError):
        raise damaged from None
    if "sha256" in meta and hashlib.sha256(_data_section(raw)).hexdigest() != meta["sha256"]:
        raise CharRNNError(
            f"{path} is damaged: its data does not match the checksum written with it "
            "(a disk or copy error); restore it from a backup or retrain."
        )
    return tensors, metadata


def _check_memory(path: Path, size: int) -> None:
    """Refuse a file whose reading (its bytes, then its tensors: twice its size) needs more than is available."""
    from charrnn.core.memory import available_bytes, gib

    free = available_bytes()
    if free is not None and 2 * size > free:
        raise CharRNNError(
            f"{path} is {gib(size)}; reading it needs about {gib(2 * size)} of memory but {gib(free)} is "
            "available (free memory, the address-space limit and the cgroup's limit counted)."
        )


# what a resume file holds (format 1 kept the hidden state as hidden.N)
RESUME_NAMES = re.compile(r"model\..+|optim\.\d+\.\w+|task\.\w+(\.\d+)?|hidden\.\d+|rng\.\w+")


def write_config(run_dir: Path, config: Any) -> None:
    """Write a run's config.json atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / CONFIG_FILE, config.to_json().encode("utf-8"))


def write_tokenizer(directory: Path, tokenizer: Tokenizer) -> None:
    """Write a tokenizer's file(s) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in tokenizer.to_files().items():
        atomic_write(directory / name, data)


def run_kind(run_dir: Path, command: str = "train") -> str:
    """The kind named in `run_dir`'s config.json ("lm" when absent), with one-line errors for what is not a run.

    Which kinds exist is `charrnn.kinds`' business: `kinds.kind_of_run` checks the name.
    """
    run_dir = Path(run_dir)
    where = f"give the run directory that `charrnn {command}` wrote"
    if not run_dir.exists():
        raise CharRNNError(f"{run_dir} does not exist: no such run directory; {where}.")
    if not run_dir.is_dir():
        raise CharRNNError(f"{run_dir} is a file; {where}.")
    if not (run_dir / CONFIG_FILE).is_file():
        raise CharRNNError(f"{run_dir} is not a charrnn run directory ({CONFIG_FILE} is missing).")
    kind = read_json(run_dir / CONFIG_FILE).get("kind", "lm")  # runs of format 1 were all language models
    if not isinstance(kind, str):
        raise CharRNNError(f"{run_dir / CONFIG_FILE} names an unknown kind of run {kind!r}; the file is damaged.")
    return kind


def read_run_json(run_dir: Path, command: str) -> dict[str, Any]:
    """The config.json of a run directory as JSON, checked to be of a format version this charrnn reads."""
    run_dir = Path(run_dir)
    run_kind(run_dir, command)
    data = read_json(run_dir / CONFIG_FILE)
    version = data.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:  # not True, which equals 1
        raise CharRNNError(
            f"{run_dir} has run format version {version}, this charrnn reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}; use the charrnn version that wrote it "
            f"({data.get('charrnn_version', 'unknown')})."
        )
    return data


def read_run_config(run_dir: Path, cls: type, command: str) -> Any:
    """Read, migrate (`cls.migrate`, then the format version) and check the config.json of a run of `cls`'s kind."""
    data = read_run_json(Path(run_dir), command)
    found = data.get("kind", "lm")
    if found != cls.kind:
        raise CharRNNError(
            f"{run_dir} holds a run of kind {found!r}, not {cls.kind!r}; `charrnn.load` opens a run of any kind."
        )
    data = cls.migrate(dict(data))
    data["format_version"] = FORMAT_VERSION
    try:
        config = cls.from_dict(data)
    except CharRNNError as exc:
        raise CharRNNError(f"{Path(run_dir) / CONFIG_FILE} is damaged: {exc}") from None
    try:
        config.validate()
    except CharRNNError as exc:
        raise CharRNNError(f"{Path(run_dir) / CONFIG_FILE} is damaged: {exc}") from None
    return config


MAX_TOKENIZER_BYTES = 1 << 30


def read_tokenizer(run_dir: Path) -> Tokenizer:
    """Load the tokenizer saved in a run directory."""
    run_dir = Path(run_dir)
    files = {}
    for name in (TOKENIZER_JSON, SENTENCEPIECE_MODEL):
        if (run_dir / name).exists():
            files[name] = safeio.read_regular(run_dir / name, MAX_TOKENIZER_BYTES, "tokenizer file")
    try:
        return tokenizer_from_files(files)
    except CharRNNError as exc:
        raise CharRNNError(f"{run_dir}: {exc}", exc.exit_code) from None


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """A short hash of a tokenizer's files, stored with the weights so a swapped tokenizer is caught."""
    digest = hashlib.sha256()
    for name, data in sorted(tokenizer.to_files().items()):
        digest.update(name.encode("utf-8") + b"\0" + data)
    return digest.hexdigest()[:16]


def tokenizers_fingerprint(*tokenizers: Tokenizer) -> str:
    """The fingerprints of a run's tokenizer(s) (seq2seq: source, then target), stored with every checkpoint."""
    return "-".join(tokenizer_fingerprint(tokenizer) for tokenizer in tokenizers)


def check_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Check that `tensors` fit `module` exactly, naming what is missing or mismatched."""
    expected = {k: v.shape for k, v in module.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CharRNNError(
            f"{source} does not match the model in config.json: missing {missing[:4]}, unexpected {unexpected[:4]}."
        )
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != tuple(shape):
            raise CharRNNError(
                f"{source}: {name} has shape {tuple(tensors[name].shape)} but config.json implies "
                f"{tuple(shape)}; the weights and config/tokenizer come from different runs."
            )
        tensor = tensors[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CharRNNError(
                f"{source}: {name} holds NaN or infinite values; the weights are damaged: "
                "restore them from a backup or retrain."
            )


def load_weights_into(module: torch.nn.Module, path: Path) -> dict[str, Any]:
    """Load safetensors weights from `path` into `module` after checking every shape."""
    tensors, metadata = load_tensors(path)
    check_weights(module, tensors, path)
    module.load_state_dict(tensors)
    return metadata


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to metrics.jsonl (a torn last line is skipped by readers)."""
    fd = safeio.open_append(run_dir / METRICS_FILE)  # never through a link, never blocking on a FIFO
    try:
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise _write_error(run_dir / METRICS_FILE, exc) from None


MAX_METRICS_BYTES = 1 << 30


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All complete records of metrics.jsonl."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    raw = safeio.read_regular(path, MAX_METRICS_BYTES, "metrics file")
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Keep only the records up to `last_step` (a resumed run logs the later steps again)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    kept = [r for r in read_metrics(run_dir) if not isinstance(r.get("step"), int) or r["step"] <= last_step]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept).encode("utf-8"))


def read_weights(
    run_dir: Path, weights: str = WEIGHTS_FILE, expected: dict[str, tuple[int, ...]] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any], str | None]:
    """The model weights of a run: (tensors, metadata, note).

    The best weights (model.safetensors) when they exist; before the first evaluation has written
    them, the latest weights in resume.safetensors, with a one-line note saying so for the caller to show.
    `expected` (name -> shape) is checked against the file's header before its data is read.
    """
    run_dir = Path(run_dir)
    expected = expected or {}
    if (run_dir / weights).exists() or weights != WEIGHTS_FILE or not (run_dir / RESUME_FILE).is_file():
        if not (run_dir / weights).exists():
            raise CharRNNError(f"{run_dir} is incomplete: {weights} is missing.")
        tensors, metadata = load_tensors(run_dir / weights, expected, closed="" if expected else None)
        return tensors, metadata, None
    model_shapes = {f"model.{k}": v for k, v in expected.items()}
    tensors, metadata = load_tensors(
        run_dir / RESUME_FILE, model_shapes, closed="model." if expected else None, allowed=RESUME_NAMES
    )
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    state = metadata.get("train_state")
    step = state.get("step") if isinstance(state, dict) else None
    note = (
        f"{run_dir} has no {weights} yet (no evaluation has run); using the latest weights "
        f"from {RESUME_FILE}, step {step}"
    )
    return model, metadata, note


RUN_FILES = (CONFIG_FILE, WEIGHTS_FILE, RESUME_FILE, METRICS_FILE, TOKENIZER_JSON, SENTENCEPIECE_MODEL)
RUN_FOLDERS = ("source", "target", "checkpoints")  # seq2seq's per-side tokenizers; --keep-checkpoints


RUN_MARKER = "charrnn_version"  # with a readable "format_version", what makes config.json a charrnn run's
LOCK_FILE = ".charrnn.lock"  # the one-writer lock (`charrnn.core.runwriter`); not part of the run
IGNORED_NAMES = (LOCK_FILE,)


def is_run_config(path: Path) -> bool:
    """Whether `path` is a regular config.json written by charrnn: a JSON object with the run marker and a readable format version."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode) or os.lstat(path).st_size > 10_000_000:
            return False
        data = json.loads(Path(path).read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(data, dict) or not isinstance(data.get(RUN_MARKER), str):
        return False
    version = data.get("format_version")
    return isinstance(version, int) and not isinstance(version, bool) and version in READABLE_VERSIONS


def check_run_dir(run_dir: Path, overwrite: bool) -> bool:
    """Refuse an --out that is a file, another program's folder, or (without `overwrite`) an existing run.

    Returns whether `run_dir` holds a run that `overwrite` will replace. A folder is a run only if its
    config.json carries charrnn's marker and format version; a run folder holding anything charrnn
    did not write is refused too, so that --overwrite never deletes a user's own files.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise CharRNNError(f"--out {run_dir} is a file; choose a directory.")
    names = sorted(p.name for p in run_dir.iterdir() if p.name not in IGNORED_NAMES) if run_dir.is_dir() else []
    holds_run = bool(names)
    if names:
        if not is_run_config(run_dir / CONFIG_FILE):
            raise CharRNNError(f"--out {run_dir} exists and is not a charrnn run directory; choose another --out.")
        if not overwrite:
            raise CharRNNError(
                f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to replace it.",
                forms={
                    "api": f"{run_dir} already holds a run; pass resume={str(run_dir)!r} to continue it "
                    "or overwrite=True to replace it."
                },
            )
        known = (*RUN_FILES, *RUN_FOLDERS)
        foreign = [
            n for n in names if n not in known and not (n.startswith(TEMP_PREFIX) and n.endswith(TEMP_SUFFIX))
        ]
        if foreign:
            raise CharRNNError(
                f"{run_dir} holds files charrnn did not write ({', '.join(foreign[:3])}); --overwrite would "
                "delete them: move them out or choose another --out."
            )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CharRNNError(f"Cannot create --out {run_dir}: {exc.strerror}.") from None
    if not os.access(run_dir, os.W_OK):
        raise CharRNNError(f"--out {run_dir} is not writable; choose a directory you can write to.")
    return holds_run


def remove_if_empty(run_dir: Path) -> None:
    """Remove `run_dir` if nothing was written to it (a training that failed before writing anything)."""
    with contextlib.suppress(OSError):
        run_dir.rmdir()  # fails, harmlessly, when the directory holds anything


def clear_run_dir(run_dir: Path) -> None:
    """Delete the files of a previous run in `run_dir` (after `check_run_dir` allowed it)."""
    import shutil

    remove_temp_files(run_dir)
    for name in sorted(RUN_FILES, key=lambda n: n == CONFIG_FILE):  # config.json last: a kill part-way
        (run_dir / name).unlink(missing_ok=True)  # still leaves a run that --overwrite accepts
    for folder in RUN_FOLDERS:
        if (run_dir / folder).is_dir() and not (run_dir / folder).is_symlink():
            shutil.rmtree(run_dir / folder)


def read_metadata(path: Path) -> dict[str, Any]:
    """The JSON metadata of a safetensors file written by `save_tensors`, from its header only ({} if unreadable)."""
    try:
        return _metadata_of(read_header(path))[1]
    except (CharRNNError, ValueError, TypeError, AttributeError, RecursionError):
        return {}


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Training progress of a run from its files: steps, epochs, tokens, time, validation losses."""
    run_dir = Path(run_dir)
    state = read_metadata(run_dir / RESUME_FILE).get("train_state")
    state = state if isinstance(state, dict) else {}
    best_step = read_metadata(run_dir / WEIGHTS_FILE).get("step") if (run_dir / WEIGHTS_FILE).is_file() else None

    def number(value: Any, kind: type = float) -> Any:  # a forged file's "abc" or -100 shows as unknown
        ok = isinstance(value, int if kind is int else int | float) and not isinstance(value, bool) and value >= 0
        return value if ok else None

    return {
        "steps": number(state.get("step"), int),
        "epoch": number(state.get("epoch"), int),
        "chunk": number(state.get("chunk"), int),
        "chunks_per_epoch": number(state.get("chunks_per_epoch"), int),
        "tokens_seen": number(state.get("tokens_seen"), int),
        "seconds_trained": number(state.get("elapsed")),
        "best_val_loss": number(state.get("best_val_loss")),
        "last_val_loss": number(state.get("last_val_loss")),
        "best_weights_step": number(best_step, int),
        "clipped_share": clipped_share(state),
    }
