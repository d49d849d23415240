"""`charrnn export --format onnx`: onnxruntime's next-token log-probabilities equal PyTorch's."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import charrnn
from charrnn.core.special_tokens import EOS_ID
from charrnn.lm.config import ModelConfig
from charrnn.lm.export import export_onnx
from charrnn.lm.model import LanguageModel
from charrnn.lm.run import LanguageModelRun
from tests.support import REPO_ROOT
from tests.test_cli import run_cli

ort = pytest.importorskip("onnxruntime")  # the optional extra charrnn[onnx]; CI installs it
LM_RUN = REPO_ROOT / "tests" / "data" / "old_runs" / "lm-char" / "run"


def gru_run(tmp_path: Path) -> LanguageModelRun:
    """The bundled run's tokenizer with a fresh 2-layer GRU (the bundled run is an LSTM)."""
    base = charrnn.load(LM_RUN)
    torch.manual_seed(0)
    model = LanguageModel(
        ModelConfig(vocab_size=base.tokenizer.vocab_size, cell="gru", embed=8, hidden=12, layers=2)
    )
    return LanguageModelRun(LM_RUN, base.config, base.tokenizer, model.eval(), None)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_model_matches_pytorch_over_a_50_token_rollout(cell: str, tmp_path: Path) -> None:
    run = charrnn.load(LM_RUN) if cell == "lstm" else gru_run(tmp_path)
    written = export_onnx(run, tmp_path / "m.onnx")
    meta = json.loads((tmp_path / "m.tokenizer.json").read_text(encoding="utf-8"))
    assert [p.name for p in written] == ["m.onnx", "m.step.onnx", "m.tokenizer.json"]
    assert meta["units"] == run.tokenizer.tokens(range(run.tokenizer.vocab_size)) and meta["cell"] == cell
    session = ort.InferenceSession(str(tmp_path / "m.step.onnx"))
    state = {n: np.zeros((meta["layers"], 1, meta["hidden"]), np.float32) for n in meta["state"]}
    torch_state, token = None, EOS_ID
    rng = np.random.default_rng(1)
    for _ in range(50):
        log_probs, *new = session.run(None, {"token": np.array([token], dtype=np.int64), **state})
        state = dict(zip(meta["state"], new, strict=True))
        with torch.no_grad():
            out, torch_state = run.model(torch.tensor([[token]]), torch_state)
            expected = run.model.log_probs(out)[0, 0].numpy()
        np.testing.assert_allclose(log_probs[0], expected, atol=1e-4, rtol=0)
        probs = np.exp(expected.astype(np.float64))
        token = int(rng.choice(len(probs), p=probs / probs.sum()))


def test_sequence_model_matches_pytorch_on_a_batch(tmp_path: Path) -> None:
    run = charrnn.load(LM_RUN)
    export_onnx(run, tmp_path / "m.onnx")
    ids = torch.tensor([run.tokenizer.encode("First Citizen:"), run.tokenizer.encode("Speak, speak..")])
    ids = torch.cat([torch.full((2, 1), EOS_ID), ids], dim=1)
    zeros = np.zeros((run.model.config.layers, 2, run.model.config.hidden), np.float32)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    log_probs = session.run(["log_probs"], {"ids": ids.numpy(), "h": zeros, "c": zeros})[0]
    with torch.no_grad():
        expected = run.model.log_probs(run.model(ids)[0]).numpy()
    assert log_probs.shape == (2, ids.shape[1], run.tokenizer.vocab_size)
    np.testing.assert_allclose(log_probs, expected, atol=1e-4, rtol=0)


def readme_onnx_example() -> str:
    """The python block of docs/export.md's "Sampling with onnxruntime only"."""
    readme = (REPO_ROOT / "docs" / "export.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Sampling with onnxruntime only") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_export_command_and_the_readme_onnxruntime_example(tmp_path: Path, monkeypatch, capsys) -> None:
    shutil.copytree(LM_RUN, tmp_path / "tinyshakespeare-char")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["export", "tinyshakespeare-char", "--format", "onnx"], capsys)
    assert code == 0 and "wrote tinyshakespeare-char.step.onnx" in err
    namespace: dict = {}
    exec(compile(readme_onnx_example(), "docs/export.md", "exec"), namespace)  # noqa: S102 - our own docs
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:") and len(text) > 100
    units = set(json.loads(Path("tinyshakespeare-char.tokenizer.json").read_text(encoding="utf-8"))["units"])
    assert set(text[len("ROMEO:") :]) - {"\n"} <= units - {"<pad>", "<unk>", "<eos>"}  # drawn units only
    code, _, err = run_cli(["export", "tinyshakespeare-char", "--format", "tflite"], capsys)
    assert code == 1 and "--format must be onnx" in err
