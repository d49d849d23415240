"""Damaged run files (config.json, tokenizer.json, the safetensors header) give one-line errors in bounded memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT, subprocess_env

MEMORY_LIMIT = 2 << 30  # bytes of address space for the fuzzing process (torch itself needs about 1 GiB)


def test_fuzzed_run_files_load_or_fail_in_one_line_within_2_gib(trained_run: Path, tmp_path: Path) -> None:
    args = [str(trained_run), str(tmp_path), "40", str(MEMORY_LIMIT)]
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz_run_files", *args],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "fuzzed 120 run files"
