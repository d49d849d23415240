"""Threads: the wait policy and the default thread count follow how busy the machine is at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn.core.openmp import default_threads, runnable_others, wait_policy
from tests.support import REPO_ROOT


@pytest.mark.parametrize(
    ("environ", "busy", "expected"),
    [
        ({}, 0, None),  # idle: OpenMP's default (spin, then sleep) is fastest
        ({}, 1, "PASSIVE"),  # another CPU-bound task: sleep, give the core back
        ({}, None, None),  # no /proc on this OS: leave OpenMP alone
        ({"OMP_WAIT_POLICY": "ACTIVE"}, 3, None),  # the user's choice stands
    ],
)
def test_wait_policy_sleeps_only_beside_other_work(environ, busy, expected) -> None:
    assert wait_policy(environ, busy) == expected


@pytest.mark.parametrize(
    ("cores", "busy", "expected"), [(2, 0, 2), (2, 1, 1), (2, 5, 1), (16, 0, 8), (16, 10, 6), (4, None, 4)]
)
def test_default_threads_are_the_free_cores_at_most_eight(cores, busy, expected) -> None:
    assert default_threads(cores, busy) == expected


def test_runnable_others_reads_the_running_count_less_this_process(tmp_path: Path) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.50 0.40 0.30 3/120 4567\n")
    assert runnable_others(loadavg, samples=3, interval=0) == 2
    assert runnable_others(tmp_path / "absent", samples=3, interval=0) is None
    loadavg.write_text("garbage\n")
    assert runnable_others(loadavg, samples=1, interval=0) is None


def policy_after_import(env: dict[str, str], running: int) -> str:
    """OMP_WAIT_POLICY after `import charrnn, torch` in a fresh process that sees `running` runnable tasks."""
    probe = (  # load charrnn.core.openmp on its own, fake the count, then import charrnn as a user does
        "import importlib.util, os, sys; "
        "spec = importlib.util.spec_from_file_location('charrnn.core.openmp', 'charrnn/core/openmp.py'); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        f"m.runnable_others = lambda *a, **k: {running}; sys.modules['charrnn.core.openmp'] = m; "
        "import charrnn, torch; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_importing_charrnn_first_sets_the_policy_before_torch_loads() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    assert policy_after_import(env, 0) == "unset"
    assert policy_after_import(env, 1) == "PASSIVE"
    assert policy_after_import({**env, "OMP_WAIT_POLICY": "ACTIVE"}, 1) == "ACTIVE"
