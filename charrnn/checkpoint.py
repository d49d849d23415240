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
METRICS_FILE = "metrics.jsonl"


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one, whole."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        hint = " (disk full)" if exc.errno == errno.ENOSPC else ""
        raise CharRNNError(
            f"Could not write {path}{hint}: {exc.strerror}. The previous version of the file is intact."
        ) from None
    _fsync_directory(path.parent)


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
    """Atomically write tensors (and JSON metadata) as a safetensors file."""
    plain = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    meta = {"json": json.dumps(metadata)} if metadata is not None else None
    atomic_write(path, save_safetensors_bytes(plain, metadata=meta))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file written by `save_tensors`; never executes anything from it."""
    path = Path(path)
    if not path.is_file():
        raise CharRNNError(f"{path} is missing.")
    raw = path.read_bytes()
    try:
        tensors = load_safetensors_bytes(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
    except (SafetensorError, ValueError, OverflowError):
        raise CharRNNError(
            f"{path} is not a valid safetensors file (damaged, truncated, or not written by charrnn); "
            "restore it from a backup or retrain."
        ) from None
    meta = header.get("__metadata__") or {}
    metadata = json.loads(meta["json"]) if "json" in meta else {}
    return tensors, metadata


def write_run_files(run_dir: Path, config: RunConfig, tokenizer: Tokenizer) -> None:
    """Write config.json and the tokenizer file(s) of a run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / CONFIG_FILE, config.to_json().encode("utf-8"))
    for name, data in tokenizer.to_files().items():
        atomic_write(run_dir / name, data)


def read_config(run_dir: Path) -> RunConfig:
    """Read and check a run's config.json."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CharRNNError(f"{run_dir}: no such run directory.")
    if not run_dir.is_dir():
        raise CharRNNError(f"{run_dir} is a file; give the run directory that `charrnn train` wrote.")
    if not (run_dir / CONFIG_FILE).is_file():
        raise CharRNNError(f"{run_dir} is not a charrnn run directory ({CONFIG_FILE} is missing).")
    data = read_json(run_dir / CONFIG_FILE)
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise CharRNNError(
            f"{run_dir} has run format version {version}, this charrnn reads version {FORMAT_VERSION}; "
            f"use the charrnn version that wrote it ({data.get('charrnn_version', 'unknown')})."
        )
    try:
        return RunConfig.from_dict(data)
    except TypeError as exc:
        raise CharRNNError(f"{run_dir / CONFIG_FILE} is damaged: {exc}.") from None


def read_tokenizer(run_dir: Path) -> Tokenizer:
    """Load the tokenizer saved in a run directory."""
    files = {}
    for name in (TOKENIZER_JSON, SENTENCEPIECE_MODEL):
        if (run_dir / name).is_file():
            files[name] = (run_dir / name).read_bytes()
    return tokenizer_from_files(files)


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
    with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All complete records of metrics.jsonl."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def load_language_model(run_dir: str | Path, device: torch.device | str = "cpu", weights: str = WEIGHTS_FILE):
    """Load (config, tokenizer, model in eval mode) from a language-model run directory."""
    from charrnn.model import LanguageModel

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config.kind != "lm":
        raise CharRNNError(f"{run_dir} holds a {config.kind} run, not a language model.")
    tokenizer = read_tokenizer(run_dir)
    if tokenizer.vocab_size != config.model.vocab_size:
        raise CharRNNError(
            f"{run_dir}: the tokenizer has {tokenizer.vocab_size} entries but the model was built for "
            f"{config.model.vocab_size}; the tokenizer file belongs to another run."
        )
    if not (run_dir / weights).is_file():
        raise CharRNNError(
            f"{run_dir} has no {weights} yet: training has not reached its first evaluation; "
            "train longer or wait for the first checkpoint."
        )
    model = LanguageModel(config.model)
    load_weights_into(model, run_dir / weights)
    return config, tokenizer, model.to(device).eval()
