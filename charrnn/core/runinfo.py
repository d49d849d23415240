"""What a run directory holds, read from its files without loading the model: `charrnn info`, `charrnn runs`.

Everything comes from config.json, the safetensors headers (shapes and JSON metadata, never the
tensors) and metrics.jsonl, so listing a folder of large runs stays fast. Losses are natural-log
cross-entropy per token (nats/token); at char level bits/char = nats/token / ln 2; perplexity is
exp(nats/token).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from charrnn.core import rundir
from charrnn.core.errors import CharRNNError


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """The tensor shapes in a safetensors file, from its checked header only ({} if missing, not a file or damaged)."""
    try:
        header = rundir.read_header(path)
    except CharRNNError:
        return {}
    return {name: list(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}


def parameter_count(run_dir: Path) -> int | None:
    """Number of model parameters, from the best weights' header (or the resume file's model part)."""
    shapes = safetensors_shapes(run_dir / rundir.WEIGHTS_FILE)
    if not shapes:
        shapes = {
            k: v for k, v in safetensors_shapes(run_dir / rundir.RESUME_FILE).items() if k.startswith("model.")
        }
    if not shapes:
        return None
    return sum(math.prod(shape) for shape in shapes.values())


def loss_measures(loss: float | None, level: str | None) -> dict[str, float | None]:
    """A loss in nats/token with its bits/char (char level only) and perplexity (none for a run without tokens)."""
    if loss is None or level is None or not math.isfinite(loss):
        return {"bits_per_char": None, "perplexity": None}
    return {
        "bits_per_char": loss / math.log(2.0) if level == "char" else None,
        "perplexity": math.exp(min(loss, 700.0)),
    }


def _iso_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


def _file_times(run_dir: Path) -> tuple[float | None, float | None]:
    """(created, updated): config.json's modification time, and the newest of the run's files."""
    times = [
        (run_dir / name).stat().st_mtime
        for name in (rundir.CONFIG_FILE, rundir.WEIGHTS_FILE, rundir.RESUME_FILE, rundir.METRICS_FILE)
        if (run_dir / name).is_file()
    ]
    created = (run_dir / rundir.CONFIG_FILE).stat().st_mtime if (run_dir / rundir.CONFIG_FILE).is_file() else None
    return created, max(times) if times else None


def _epochs(run_dir: Path, summary: dict[str, Any]) -> float | None:
    """Epochs trained, fractional, at the last saved step: from the resume state (epoch + chunk / chunks per
    epoch); for runs saved before charrnn 0.3 (no chunks per epoch), the last logged training record's epoch."""
    epoch, chunk, chunks = summary["epoch"], summary["chunk"], summary["chunks_per_epoch"]
    if all(isinstance(v, int) for v in (epoch, chunk, chunks)) and chunks > 0:
        return epoch + chunk / chunks
    state_epoch = epoch
    for record in reversed(rundir.read_metrics(run_dir)):
        if "train_loss" in record and isinstance(record.get("epoch"), int | float):
            return float(record["epoch"])
    return float(state_epoch) if isinstance(state_epoch, int | float) else None


def _precision(training: dict[str, Any]) -> Any:
    """What a run trains in, as `charrnn.load(RUN).info()` says it: "bf16 (auto)", or the precision asked for."""
    asked, resolved = training.get("precision"), training.get("resolved_precision")
    return f"{resolved} (auto)" if asked == "auto" and resolved else asked


def run_facts(run_dir: str | Path, config_classes: Mapping[str, Any]) -> dict[str, Any]:
    """The facts `charrnn info` shows about a run: kind, level, size, progress, validation, device, versions, times.

    `config_classes` maps each kind of run that may be here to its config class, whose `describe`
    reads the kind's own facts (level, vocabulary, corpus) from config.json.
    """
    run_dir = Path(run_dir)
    kind = rundir.run_kind(run_dir, "info")
    if kind not in config_classes:
        raise CharRNNError(
            f"{run_dir / rundir.CONFIG_FILE} names an unknown kind of run {kind!r}; the file is damaged."
        )
    config = rundir.read_run_json(run_dir, "info")
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    described = config_classes[kind].describe(config)
    level, vocab, corpus = described["level"], described["vocab_size"], described["corpus"]
    summary = rundir.run_summary(run_dir)
    created, updated = _file_times(run_dir)
    best = summary["best_val_loss"]
    loss_level = described.get("loss_level", level)  # what the loss is per: a token, or a classifier's label
    measures = loss_measures(best, loss_level or "")
    return {
        "name": run_dir.name,
        "kind": kind,
        "run_dir": str(run_dir),
        "level": level,
        "loss_level": loss_level,
        "vocab_size": vocab,
        "parameters": parameter_count(run_dir),
        "cell": model.get("cell"),
        "layers": model.get("layers"),
        "hidden": model.get("hidden"),
        "embed": model.get("embed"),
        "steps": summary["steps"],
        "epochs": _epochs(run_dir, summary),
        "tokens_seen": summary["tokens_seen"],
        "seconds_trained": summary["seconds_trained"],
        "best_val_loss": best,
        "best_val_bits_per_char": measures["bits_per_char"],
        "best_val_perplexity": measures["perplexity"],
        "last_val_loss": summary["last_val_loss"],
        "best_weights_step": summary["best_weights_step"],
        "clipped_share": summary["clipped_share"],
        "device": training.get("resolved_device") or training.get("device"),
        "precision": _precision(training),
        "charrnn_version": config.get("charrnn_version"),
        "corpus": corpus,
        "labels": described.get("labels"),  # labelled kinds: training examples per label
        "created": _iso_time(created),
        "updated": _iso_time(updated),
    }


def find_runs(directory: str | Path) -> list[Path]:
    """Every run directory (a folder with a config.json) at or below `directory`, sorted by path."""
    directory = Path(directory)
    found = {p.parent for p in directory.rglob(rundir.CONFIG_FILE) if p.is_file()}
    return sorted(found)


def list_runs(
    directory: str | Path, config_classes: Mapping[str, Any], sort: str = "path"
) -> tuple[list[dict[str, Any]], list[str]]:
    """Facts of every run under `directory` and one line per folder that could not be read.

    `config_classes`: as for `run_facts`. `sort`: "path", "loss" (best validation loss, lowest first;
    runs without one last), "steps" or "updated".
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CharRNNError(f"{directory} is not a directory; give the folder that holds your runs.")
    if sort not in ("path", "loss", "steps", "updated"):
        raise CharRNNError(f"--sort must be path, loss, steps or updated, got {sort!r}.")
    facts, problems = [], []
    for path in find_runs(directory):
        try:
            facts.append(run_facts(path, config_classes))
        except CharRNNError as exc:
            problems.append(str(exc))
    if sort == "loss":
        facts.sort(key=lambda f: (f["best_val_loss"] is None, f["best_val_loss"] or 0.0))
    elif sort == "steps":
        facts.sort(key=lambda f: -(f["steps"] or 0))
    elif sort == "updated":
        facts.sort(key=lambda f: f["updated"] or "", reverse=True)
    return facts, problems
