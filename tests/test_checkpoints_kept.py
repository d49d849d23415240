"""`--keep-checkpoints N`: the last N resumable checkpoints, named by step and validation loss."""

from __future__ import annotations

import json
from pathlib import Path

import charrnn
from charrnn.core import rundir
from charrnn.core.checkpoints import checkpoint_name, kept_checkpoints


def test_the_last_n_checkpoints_are_kept_with_step_and_validation_loss(tmp_path: Path, corpus_file: Path) -> None:
    options = {"hidden": 8, "embed": 8, "layers": 1, "batch_size": 4, "bptt": 8, "threads": 1}
    run_dir = tmp_path / "run"
    charrnn.train(
        corpus_file, out=run_dir, max_steps=20, eval_every=5, save_every=5, keep_checkpoints=2, **options
    )
    kept = kept_checkpoints(run_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    assert [p.name for p in kept] == [checkpoint_name(15, val[15]), checkpoint_name(20, val[20])]
    for path, step in zip(kept, (15, 20), strict=True):
        _, metadata = rundir.load_tensors(path)  # a complete, checksummed resume file
        assert metadata["train_state"]["step"] == step
    assert kept[-1].read_bytes() == (run_dir / rundir.RESUME_FILE).read_bytes()
    charrnn.train(corpus_file, out=run_dir, overwrite=True, max_steps=2, **options)
    assert kept_checkpoints(run_dir) == []  # --overwrite clears them with the rest of the run


def test_checkpoint_names() -> None:
    assert checkpoint_name(1200, 1.43214) == "step00001200-val1.4321.safetensors"
    assert checkpoint_name(7, None) == "step00000007-valnone.safetensors"
