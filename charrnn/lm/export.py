"""Export a language model to ONNX: a single-step model for generation, a sequence model for scoring.

`export_onnx(run, "model.onnx")` writes
  model.onnx             sequence model: ids (batch, time) int64 + state -> log_probs (batch, time, vocab) + state
  model.step.onnx        single step:    token (batch,) int64 + state   -> log_probs (batch, vocab) + state
  model.tokenizer.json   the tokenizer (units by id, level, specials) and the state's names and shapes
  (model.tokenizer.model for a subword run: the sentencepiece model the units come from)

The state is `h` (layers, batch, hidden), plus `c` of the same shape for an LSTM, zeros at the start
of a text. log_probs are log P(next token | tokens so far) (log-softmax of the logits). Feed `<eos>`
(id 2) first: the model reads it as the start of a line, as in training.

Every file is exported into memory first and then written atomically (`rundir.atomic_write`: a
temporary file, fsync, rename): a full disk or a file-size limit leaves the previous export whole,
and a symbolic link at a target is replaced, never written through.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from charrnn.core import rundir
from charrnn.core.errors import CharRNNError
from charrnn.core.special_tokens import EOS_ID, PAD_ID, UNK_ID
from charrnn.core.tokenizers import SENTENCEPIECE_MODEL, Tokenizer
from charrnn.lm.model import LanguageModel
from charrnn.lm.run import LanguageModelRun

INSTALL_HINT = "ONNX export needs onnx: pip install 'charrnn[onnx]' (or pip install onnx onnxruntime)"
OPSET = 17


class _Sequence(nn.Module):
    """ids (batch, time) + state -> log_probs (batch, time, vocab) + state."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__()
        self.model, self.lstm = model, model.config.cell == "lstm"

    def forward(self, ids: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None) -> Any:
        out, state = self.model(ids, (h, c) if self.lstm else h)
        log_probs = self.model.log_probs(out)
        return (log_probs, *state) if self.lstm else (log_probs, state)


class _Step(_Sequence):
    """token (batch,) + state -> log_probs (batch, vocab) + state."""

    def forward(self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None) -> Any:
        log_probs, *state = super().forward(token[:, None], h, c)
        return (log_probs[:, 0], *state)


def sidecar(tokenizer: Tokenizer, model: LanguageModel, level: str) -> dict[str, Any]:
    """The JSON that goes beside the ONNX files: how text becomes ids and back, and the state's shape."""
    config = model.config
    return {
        "format": "charrnn-onnx-1",
        "level": level,
        "lowercase": bool(getattr(tokenizer, "lowercase", False)),
        "units": tokenizer.tokens(range(tokenizer.vocab_size)),  # unit of each id
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "eos_id": EOS_ID,
        "cell": config.cell,
        "layers": config.layers,
        "hidden": config.hidden,
        "state": ["h", "c"] if config.cell == "lstm" else ["h"],  # each (layers, batch, hidden), zeros at start
        "sentencepiece_model": None,
    }


def export_onnx(run: LanguageModelRun, out: str | Path) -> list[Path]:
    """Write the sequence model to `out`, the step model and the tokenizer sidecar beside it; the paths written."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise CharRNNError(INSTALL_HINT) from None
    if not isinstance(run, LanguageModelRun):
        raise CharRNNError("ONNX export is for language-model runs; other kinds cannot be exported yet.")
    model: LanguageModel = run.model
    if model.config.softmax != "full":
        raise CharRNNError("ONNX export supports the full softmax only; this run uses --softmax adaptive.")
    out = Path(out)
    if out.suffix != ".onnx":
        raise CharRNNError(f"-o {out} should end in .onnx.")
    if not out.parent.is_dir():
        raise CharRNNError(f"{out.parent} does not exist; create it or choose another -o.")
    model = model.cpu().eval()
    config = model.config
    lstm = config.cell == "lstm"
    state = [torch.zeros(config.layers, 1, config.hidden) for _ in range(2 if lstm else 1)]
    state_names = ["h", "c"][: len(state)]
    state_axes = {name: {1: "batch"} for name in state_names} | {f"{n}_out": {1: "batch"} for n in state_names}
    step_path = out.with_suffix(".step.onnx")
    jobs = [
        (_Sequence(model), (torch.full((1, 3), EOS_ID), *state), "ids", {0: "batch", 1: "time"}, out),
        (_Step(model), (torch.full((1,), EOS_ID), *state), "token", {0: "batch"}, step_path),
    ]
    exported = {}
    for module, args, input_name, input_axes, path in jobs:
        axes = {input_name: input_axes, "log_probs": dict(input_axes), **state_axes}
        buffer = io.BytesIO()  # in memory first: the exporter's own writes would not be atomic
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on LSTM batch sizes: the state is an input
            torch.onnx.export(
                module.eval(), args, buffer, dynamo=False, opset_version=OPSET,
                input_names=[input_name, *state_names],
                output_names=["log_probs", *(f"{n}_out" for n in state_names)], dynamic_axes=axes,
            )  # fmt: skip
        exported[path] = buffer.getvalue()
    for path, data in exported.items():
        rundir.atomic_write(path, data)
    meta = sidecar(run.tokenizer, model, run.config.tokenizer.level)
    written = [out, step_path]
    if run.config.tokenizer.level == "subword":
        sp_path = out.with_suffix(".tokenizer.model")
        rundir.atomic_write(sp_path, (Path(run.run_dir) / SENTENCEPIECE_MODEL).read_bytes())
        meta["sentencepiece_model"] = sp_path.name
        written.append(sp_path)
    json_path = out.with_suffix(".tokenizer.json")
    rundir.atomic_write(json_path, json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8"))
    return [*written, json_path]
