"""A built wheel trains out of the box: `pip install charrnn && charrnn train` from an empty folder.

The wheel is built from a copy of the checkout, installed into a fresh virtual environment (which sees
this interpreter's packages, so torch is not downloaded again) and run from a folder that holds
nothing: the bundled corpora must come from the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT

SKIPPED = shutil.ignore_patterns(
    ".git", "checkpoints", "build", "dist", "*.egg-info", "__pycache__", ".*cache*", ".venv", "tests", "bench"
)
TINY = ["--max-steps", "2", "--hidden", "16", "--embed", "8", "--threads", "1", "--precision", "fp32"]


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def test_an_installed_wheel_trains_from_an_empty_folder(tmp_path: Path) -> None:
    source = Path(shutil.copytree(REPO_ROOT, tmp_path / "source", ignore=SKIPPED))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", CHARRNN_CACHE=str(tmp_path / "user-cache"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    run(
        [*pip, "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(wheels)],
        source,
        env,
    )
    (wheel,) = wheels.glob("charrnn-*.whl")

    venv = tmp_path / "venv"  # no pip of its own: this interpreter's pip is visible through the system packages
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)], tmp_path, env)  # fmt: skip
    installed = run([str(python), "-c", "import charrnn; print(charrnn.__file__)"], tmp_path, env).stdout
    assert installed.startswith(str(venv)), f"charrnn imported from {installed}, not the fresh environment"

    empty = tmp_path / "empty"
    empty.mkdir()
    charrnn = str(venv / "bin" / "charrnn")
    done = run([charrnn, "train", *TINY, "--eval-tokens", "2000", "--bptt", "16", "--batch-size", "4"], empty, env)
    assert "tinyshakespeare" in done.stderr and (empty / "checkpoints" / "tinyshakespeare-char").is_dir()
    run([charrnn, "seq2seq", "train", *TINY, "--batch-size", "8"], empty, env)
    assert (empty / "checkpoints" / "multi30k-de-en-small-luong-general" / "model.safetensors").is_file()
    done = run([charrnn, "train", "--task", "classify", *TINY, "--batch-size", "8"], empty, env)
    assert "18 labels: Russian" in done.stderr and (empty / "checkpoints" / "names-classifier").is_dir()
    assert sorted(p.name for p in empty.iterdir()) == ["checkpoints"]  # nothing else written into the folder
