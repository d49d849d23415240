"""Numbered checkpoints (`--keep-checkpoints N`): the last N resumable checkpoints, named by step and validation loss.

Each save of resume.safetensors is also copied to checkpoints/step00001200-val1.4321.safetensors
(char-rnn's convention of naming a checkpoint by its validation loss), beside the best weights
(model.safetensors) and the latest state (resume.safetensors); older copies beyond N are deleted.
To go back to one, copy it over resume.safetensors and resume the run.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path

from charrnn.core import rundir

FOLDER = "checkpoints"
NAME = re.compile(r"^step(\d{8})-val([0-9.]+|none)\.safetensors$")


def checkpoint_name(step: int, val_loss: float | None) -> str:
    """The file name of the checkpoint at `step` with the last validation loss `val_loss`."""
    loss = f"{val_loss:.4f}" if val_loss is not None and math.isfinite(val_loss) else "none"
    return f"step{step:08d}-val{loss}.safetensors"


def kept_checkpoints(run_dir: Path) -> list[Path]:
    """The numbered checkpoints of a run, oldest step first."""
    folder = Path(run_dir) / FOLDER
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def keep_checkpoint(run_dir: Path, step: int, val_loss: float | None, keep: int) -> Path:
    """Copy the run's resume file to a numbered checkpoint and delete all but the last `keep`."""
    run_dir = Path(run_dir)
    folder = run_dir / FOLDER
    folder.mkdir(exist_ok=True)
    for old in kept_checkpoints(run_dir):  # the same step saved again (after a final evaluation)
        if NAME.match(old.name).group(1) == f"{step:08d}":
            old.unlink(missing_ok=True)
    path = folder / checkpoint_name(step, val_loss)
    rundir.atomic_write(path, (run_dir / rundir.RESUME_FILE).read_bytes())
    for old in kept_checkpoints(run_dir)[:-keep]:
        with contextlib.suppress(OSError):
            old.unlink()
    return path
