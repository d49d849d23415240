"""Damaged token caches (issue 21, item 7) are reused or rebuilt, always with the right ids, in bounded memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT, subprocess_env

MEMORY_LIMIT = 2 << 30  # bytes of address space for the fuzzing process (torch itself needs about 1 GiB)


def test_fuzzed_token_caches_are_reused_or_rebuilt_within_2_gib(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz_token_cache", str(tmp_path), "30", str(MEMORY_LIMIT)],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "fuzzed 90 token caches"
