"""Damaged run files (config.json, tokenizer.json, the safetensors header) give one-line errors in bounded memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from charrnn.lm.training import train_language_model
from tests.reliability_support import REPO_ROOT, subprocess_env, tiny_config, write_corpus

MEMORY_LIMIT = 2 << 30  # bytes of address space for the fuzzing process (torch itself needs about 1 GiB)


def test_fuzzed_run_files_load_or_fail_in_one_line_within_2_gib(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    train_language_model(tiny_config(corpus, max_steps=4), tmp_path / "run")
    (tmp_path / "work").mkdir()
    args = [str(tmp_path / "run"), str(tmp_path / "work"), "40", str(MEMORY_LIMIT)]
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
