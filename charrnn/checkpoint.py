"""Run directories: atomic writes, safetensors weights, JSON everything else, checks on load.

A run directory holds:
  config.json          RunConfig (tokenizer, model, training settings, versions)
  tokenizer.json       the tokenizer (plus tokenizer.model for sentencepiece)
  model.safetensors    the best weights by validation loss (what sample/score load)
  resume.safetensors   the latest training state: weights, optimiser moments, RNG states,
                       hidden state, data position and counters (tensors + JSON metadata)
  metrics.jsonl        one JSON object per logged step/evaluation
Nothing here is ever unpickled: weights are safetensors, the rest JSON.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from charrnn import FORMAT_VERSION
from charrnn.config import RunConfig, read_json
from charrnn.errors import CharRNNError
from charrnn.tokenizers import SENTENCEPIECE_MODEL, TOKENIZER_JSON, Tokenizer, tokenizer_from_files

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
    _fsync_directory(path.parent)


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


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None) -> None:
    """Atomically write tensors (and JSON metadata) as a safetensors file with a checksum of its data."""
    plain = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    meta = {"json": json.dumps(metadata if metadata is not None else {})}
    draft = save_safetensors_bytes(plain, metadata=meta)  # the data section does not depend on the metadata
    meta["sha256"] = hashlib.sha256(_data_section(draft)).hexdigest()
    atomic_write(path, save_safetensors_bytes(plain, metadata=meta))


def _data_section(raw: bytes) -> bytes:
    return raw[8 + int.from_bytes(raw[:8], "little") :]


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file written by `save_tensors`, checking its checksum; never executes anything from it."""
    path = Path(path)
    if not path.is_file():
        raise CharRNNError(f"{path} is missing.")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CharRNNError(f"{path}: cannot read ({exc.strerror}).") from None
    damaged = CharRNNError(
        f"{path} is not a valid safetensors file (damaged, truncated, or not written by charrnn); "
        "restore it from a backup or retrain."
    )
    try:
        tensors = load_safetensors_bytes(raw)
        header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
        meta = header.get("__metadata__") or {}
        metadata = json.loads(meta["json"]) if "json" in meta else {}
        if not isinstance(metadata, dict):
            raise ValueError("metadata is not a JSON object")
    except (SafetensorError, ValueError, OverflowError, AttributeError, TypeError):
        raise damaged from None
    if "sha256" in meta and hashlib.sha256(_data_section(raw)).hexdigest() != meta["sha256"]:
        raise CharRNNError(
            f"{path} is damaged: its data does not match the checksum written with it "
            "(a disk or copy error); restore it from a backup or retrain."
        )
    return tensors, metadata


def write_run_files(run_dir: Path, config: RunConfig, tokenizer: Tokenizer) -> None:
    """Write config.json and the tokenizer file(s) of a run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / CONFIG_FILE, config.to_json().encode("utf-8"))
    for name, data in tokenizer.to_files().items():
        atomic_write(run_dir / name, data)


KIND_NAMES = {"lm": "a language model", "seq2seq": "a seq2seq model"}
KIND_HINTS = {
    "lm": "use `charrnn sample`/`score-sentence` for language models",
    "seq2seq": "use `charrnn seq2seq ...` for seq2seq models",
}


def read_run_json(run_dir: Path, kind: str, command: str) -> dict[str, Any]:
    """The config.json of a run directory, checked to be of `kind` and of this charrnn's format version."""
    run_dir = Path(run_dir)
    where = f"give the run directory that `charrnn {command}` wrote"
    if not run_dir.exists():
        raise CharRNNError(f"{run_dir} does not exist: no such run directory; {where}.")
    if not run_dir.is_dir():
        raise CharRNNError(f"{run_dir} is a file; {where}.")
    if not (run_dir / CONFIG_FILE).is_file():
        raise CharRNNError(f"{run_dir} is not a charrnn run directory ({CONFIG_FILE} is missing).")
    data = read_json(run_dir / CONFIG_FILE)
    found = data.get("kind", "lm")
    if found != kind:
        hint = KIND_HINTS.get(found, "this charrnn cannot use it")
        raise CharRNNError(f"{run_dir} holds a {found} run, not {KIND_NAMES[kind]}; {hint}.")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise CharRNNError(
            f"{run_dir} has run format version {version}, this charrnn reads version {FORMAT_VERSION}; "
            f"use the charrnn version that wrote it ({data.get('charrnn_version', 'unknown')})."
        )
    return data


def read_config(run_dir: Path) -> RunConfig:
    """Read and check a language-model run's config.json."""
    data = read_run_json(Path(run_dir), "lm", "train")
    try:
        return RunConfig.from_dict(data)
    except TypeError as exc:
        raise CharRNNError(f"{Path(run_dir) / CONFIG_FILE} is damaged: {exc}.") from None


def read_tokenizer(run_dir: Path) -> Tokenizer:
    """Load the tokenizer saved in a run directory."""
    run_dir = Path(run_dir)
    files = {}
    for name in (TOKENIZER_JSON, SENTENCEPIECE_MODEL):
        if (run_dir / name).is_file():
            files[name] = (run_dir / name).read_bytes()
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


def check_tokenizer_matches(
    tokenizer: Tokenizer, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], source: Path
) -> None:
    """Refuse weights whose embedding rows or recorded tokenizer hash disagree with `tokenizer`."""
    embedding = tensors.get(EMBEDDING_KEY)
    if embedding is not None and embedding.shape[0] != tokenizer.vocab_size:
        raise CharRNNError(
            f"The tokenizer has {tokenizer.vocab_size} entries but {source} has {embedding.shape[0]} embedding "
            "rows; the tokenizer file and the weights come from different runs."
        )
    recorded = metadata.get("tokenizer")
    if recorded is not None and recorded != tokenizer_fingerprint(tokenizer):
        raise CharRNNError(
            f"The tokenizer file in {source.parent} is not the one {source.name} was trained with "
            "(same size, different units); restore the run's own tokenizer file."
        )


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


def load_weights_into(module: torch.nn.Module, path: Path) -> dict[str, Any]:
    """Load safetensors weights from `path` into `module` after checking every shape."""
    tensors, metadata = load_tensors(path)
    check_weights(module, tensors, path)
    module.load_state_dict(tensors)
    return metadata


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to metrics.jsonl (a torn last line is skipped by readers)."""
    try:
        with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise _write_error(run_dir / METRICS_FILE, exc) from None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All complete records of metrics.jsonl."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
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


def missing_run_files(run_dir: Path, weights: str = WEIGHTS_FILE) -> list[str]:
    """Names of the files a run directory needs for sampling and scoring that are not there."""
    needed = [CONFIG_FILE, TOKENIZER_JSON, weights]
    tokenizer_json = Path(run_dir) / TOKENIZER_JSON
    if tokenizer_json.is_file() and b'"subword"' in tokenizer_json.read_bytes():
        needed.insert(2, SENTENCEPIECE_MODEL)
    return [name for name in needed if not (Path(run_dir) / name).is_file()]


def load_language_model(run_dir: str | Path, device: torch.device | str = "cpu", weights: str = WEIGHTS_FILE):
    """Load (config, tokenizer, model in eval mode) from a language-model run directory."""
    from charrnn.model import LanguageModel

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config.kind != "lm":
        raise CharRNNError(f"{run_dir} holds a {config.kind} run, not a language model.")
    missing = missing_run_files(run_dir, weights)
    if missing:
        hint = (
            " (training writes it at its first evaluation; train longer or wait for it)"
            if missing == [weights] and weights == WEIGHTS_FILE and (run_dir / RESUME_FILE).is_file()
            else ""
        )
        raise CharRNNError(f"{run_dir} is incomplete: {', '.join(missing)} missing{hint}.")
    tokenizer = read_tokenizer(run_dir)
    if tokenizer.vocab_size != config.model.vocab_size:
        raise CharRNNError(
            f"{run_dir}: the tokenizer has {tokenizer.vocab_size} entries but the model's embedding has "
            f"{config.model.vocab_size} rows (config.json); the tokenizer file belongs to another run."
        )
    try:
        model = LanguageModel(config.model)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CharRNNError(
            f"{run_dir / CONFIG_FILE} is damaged: the model settings are invalid ({exc})."
        ) from None
    tensors, metadata = load_tensors(run_dir / weights)
    check_tokenizer_matches(tokenizer, tensors, metadata, run_dir / weights)
    check_weights(model, tensors, run_dir / weights)
    model.load_state_dict(tensors)
    return config, tokenizer, model.to(device).eval()
