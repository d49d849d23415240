"""Resuming a run: one resume-file format for every model, and the rule for settings given again.

resume.safetensors holds
  model.*    the latest weights
  optim.*    the optimiser's tensors (moments), with its scalars and param groups in the metadata
  task.*     what the model's training task carries from one step to the next (the language
             model's hidden state; nothing for seq2seq)
  rng.*      torch's (and CUDA's and numpy's) generator states; Python's is in the metadata
and JSON metadata: the `TrainState` counters, a hash of the data and of the tokenizer(s), versions.
Format 1 (before the task.* prefix) stored the LM's hidden state as hidden.*; it is read as task.hidden.*.

Resuming starts in one place, `start` (used by the API, the CLI and the engine); the `Resumed` it
returns puts the training state back. The rule for settings on resume: the saved config is the base.
A setting given again that may change mid-run (stopping rules, learning rate and schedule,
evaluation/save cadence, device, threads, precision) overrides the saved one and is recorded in
config.json; one that cannot (tokenizer, model shape, data layout, seed) and differs is refused,
naming it.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.options import get_path, option_specs, path_info, set_path
from charrnn.core.rundir import (
    RESUME_FILE,
    RESUME_NAMES,
    check_weights,
    load_tensors,
    remove_temp_files,
    save_tensors,
    truncate_metrics,
    write_config,
)
from charrnn.core.state import TrainState
from charrnn.core.version import FORMAT_VERSION, READABLE_VERSIONS, __version__


def save_resume_state(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    carried: dict[str, torch.Tensor],
    data_hash: str,
    tokenizer_hash: str | None,
) -> None:
    """Write resume.safetensors: everything needed to continue bit for bit."""
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    optim_state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in optim_state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors.update({f"task.{name}": t for name, t in carried.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    metadata: dict[str, Any] = {
        "train_state": asdict(state),
        "optim_param_groups": optim_state["param_groups"],
        "optim_scalars": scalars,
        "python_rng": _python_rng_to_json(random.getstate()),
        "data_hash": data_hash,
        "tokenizer": tokenizer_hash,
        "format_version": FORMAT_VERSION,
        "charrnn_version": __version__,
    }
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        tensors["rng.numpy"] = torch.from_numpy(keys.astype("int64"))
        metadata["numpy_rng"] = [kind, int(pos), int(has_gauss), float(cached)]
    except ImportError:
        pass
    save_tensors(run_dir / RESUME_FILE, tensors, metadata)


def _python_rng_to_json(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


class ResumePoint:
    """What resume.safetensors restores besides the weights and optimiser: counters, carried tensors, RNGs."""

    def __init__(self, state: TrainState, carried: dict[str, torch.Tensor], data_hash: str, rng: dict[str, Any]):
        self.state, self.carried, self.data_hash, self.rng = state, carried, data_hash, rng

    def restore_rng(self) -> None:
        """Put Python's, torch's (and numpy's) generators back where the checkpoint left them."""
        try:
            self._restore_rng()
        except (RuntimeError, TypeError, ValueError, OverflowError, IndexError, KeyError) as exc:
            raise CharRNNError(
                f"The random-number state in {RESUME_FILE} is invalid ({str(exc).splitlines()[0][:80]}); the file "
                "is damaged or was not written by charrnn: restore it from a backup or retrain."
            ) from None

    def _restore_rng(self) -> None:
        python = self.rng["python"]
        random.setstate((python[0], tuple(python[1]), python[2]))
        torch.set_rng_state(self.rng["rng.torch"])
        if "rng.cuda" in self.rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(self.rng["rng.cuda"])
        if "rng.numpy" in self.rng:
            try:
                import numpy as np

                kind, pos, has_gauss, cached = self.rng["numpy_meta"]
                np.random.set_state((kind, self.rng["rng.numpy"].numpy().astype("uint32"), pos, has_gauss, cached))
            except ImportError:
                pass


def load_resume_state(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    tokenizer_hash: str | None = None,
) -> ResumePoint:
    """Restore weights and optimiser from resume.safetensors (any readable format version)."""
    path = Path(run_dir) / RESUME_FILE
    expected = {f"model.{name}": tuple(t.shape) for name, t in model.state_dict().items()}
    tensors, meta = load_tensors(path, expected, "model.", RESUME_NAMES)  # names, shapes checked before the data
    version = meta.get("format_version", FORMAT_VERSION)
    if version not in READABLE_VERSIONS:
        raise CharRNNError(
            f"{path} has run format version {version}, this charrnn reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}; resume it with the charrnn version that wrote it "
            f"({meta.get('charrnn_version', 'unknown')})."
        )
    if version == 1:  # the LM's hidden state was stored without the task prefix
        tensors = {(f"task.{k}" if k.startswith("hidden.") else k): v for k, v in tensors.items()}
    try:
        if tokenizer_hash is not None and meta.get("tokenizer") not in (None, tokenizer_hash):
            raise CharRNNError(
                f"The tokenizer files in {run_dir} are not the ones {path.name} was trained with; "
                "restore the run's own tokenizer files."
            )
        model_tensors = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        check_weights(model, model_tensors, path)
        model.load_state_dict(model_tensors)
        optim_state: dict[str, Any] = {"state": {}, "param_groups": meta["optim_param_groups"]}
        for name, value in tensors.items():
            if name.startswith("optim."):
                _, index, key = name.split(".", 2)
                optim_state["state"].setdefault(int(index), {})[key] = value
        for index, entry in meta["optim_scalars"].items():
            optim_state["state"].setdefault(int(index), {}).update(entry)
        optimizer.load_state_dict(optim_state)
        carried = {k[len("task.") :]: v.to(device) for k, v in tensors.items() if k.startswith("task.")}
        state = TrainState.from_dict(meta["train_state"])
        rng: dict[str, Any] = {k: v for k, v in tensors.items() if k.startswith("rng.")}
        rng["python"] = meta["python_rng"]
        if "numpy_rng" in meta:
            rng["numpy_meta"] = meta["numpy_rng"]
        return ResumePoint(state, carried, str(meta["data_hash"]), rng)
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
        raise CharRNNError(f"{path} is incomplete or damaged ({exc}); cannot resume.") from None


class Resumed:
    """A run about to be resumed: its saved config with the settings given again applied, and what changed.

    Made by `start`, the one entry point for resuming (the API and the CLI call it to build the
    config, the engine again before training); `restore` then puts the training state back.
    """

    def __init__(self, run_dir: Path, config: Any, changes: list[str]) -> None:
        self.run_dir, self.config, self.changes = run_dir, config, changes

    def restore(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        task: Any,
        device: torch.device,
        data_hash: str,
        tokenizer_hash: str,
        writes: bool,
    ) -> TrainState:
        """Load weights, optimiser, counters, the task's carried tensors and the RNGs; returns the counters.

        Refuses data that changed since the run started. With `writes` (the process that owns the
        run directory) also removes what a killed save left, drops metrics logged after the
        checkpoint (they are logged again), and records changed settings in config.json.
        """
        point = load_resume_state(self.run_dir, model, optimizer, device, tokenizer_hash)
        if point.data_hash != data_hash:
            raise CharRNNError(
                "The training data changed since this run started (its encoded text or pairs differ); "
                "resume needs the same data."
            )
        try:
            task.restore_carried(point.carried)
        except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
            raise CharRNNError(
                f"{self.run_dir / RESUME_FILE} is incomplete or damaged ({exc}); cannot resume."
            ) from None
        point.restore_rng()
        if writes:
            remove_temp_files(self.run_dir)  # left by a save that was killed
            truncate_metrics(self.run_dir, point.state.step)  # records after the checkpoint are logged again
            if self.changes:
                write_config(self.run_dir, self.config)  # the new stopping rules etc. hold for later resumes too
        return point.state


def start(run_dir: str | Path, saved: Any, given: Any) -> Resumed:
    """Check that the run in `run_dir` can resume, and apply the settings given again to its `saved` config.

    `given` is either the settings given again, by dotted path (the API and the CLI: what the user
    typed), or a whole config (a direct `engine.train(..., resume=True)`: each setting that differs
    from the saved one counts as given). Data files given again must be the run's own; a setting
    that cannot change mid-run and differs is refused, naming its flag.
    """
    run_dir = Path(run_dir)
    if not isinstance(given, dict):
        paths = [path for spec in option_specs(saved, ("level", "vocab_size")).values() for path in spec.paths]
        given = {p: get_path(given, p) for p in dict.fromkeys(paths) if get_path(given, p) != get_path(saved, p)}
    given = dict(given)
    data_fields = type(saved).DATA_FIELDS
    for field in data_fields:
        again, own = given.pop(field, None), getattr(saved, field)
        if again is not None and (not own or Path(again).resolve() != Path(own).resolve()):
            raise CharRNNError(
                f"{again} is not the data this run was trained on ({own}); resume without it, "
                "or start a new run with another --out."
            )
    if not (run_dir / RESUME_FILE).is_file():
        raise CharRNNError(
            f"{run_dir} has no {RESUME_FILE}; it cannot be resumed "
            "(start it again with the same --out and --overwrite)."
        )
    missing = [
        getattr(saved, f) for f in data_fields if getattr(saved, f) and not Path(getattr(saved, f)).exists()
    ]
    if missing:
        raise CharRNNError(
            f"The data this run was trained on, {missing[0]}, is missing; resume needs the same data there."
        )
    return Resumed(run_dir, saved, _apply_settings(saved, given))


def restarted(out: Path) -> bool:
    """Whether torchrun restarted this training command (after a lost rank) and `out` holds its checkpoint."""
    import os

    return os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") not in ("", "0") and (out / RESUME_FILE).is_file()


def _apply_settings(saved: Any, explicit: dict[str, Any]) -> list[str]:
    """Apply settings given again on resume to the saved config; returns the changes ("max_steps 400 -> 800").

    Raises a one-line error for a setting that cannot change mid-run and differs from the saved one.
    """
    changes = []
    for path, value in sorted(explicit.items()):
        old = get_path(saved, path)
        if old == value:
            continue
        _, meta = path_info(saved, path)
        name = path.split(".")[-1]
        if not meta.get("resumable"):
            flag = meta.get("flag") or "--" + name.replace("_", "-")
            raise CharRNNError(
                f"{flag.split('/')[0]} cannot change when resuming: the run has {path} = {old!r}, you gave "
                f"{value!r}; drop the flag to keep the run's value, or start a new run with another --out."
            )
        set_path(saved, path, value)
        changes.append(f"{name} {old} -> {value}")
    return changes
