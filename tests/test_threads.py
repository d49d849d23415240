"""Threads: OpenMP's wait policy is set before torch loads, unless the user chose one."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

PROBE = "import charrnn, os, torch; print(os.environ.get('OMP_WAIT_POLICY'))"


def policy(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_importing_charrnn_first_makes_waiting_threads_sleep() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    assert policy(env) == "PASSIVE"
    assert policy({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"  # the user's choice stands
