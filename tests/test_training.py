"""Truncated BPTT training: stream layout, state carrying, gradient cut, clipping, learning, repeatability."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from charrnn.core.recurrent import detach_state
from charrnn.core.rundir import load_tensors, read_metrics
from charrnn.core.runtime import seed_everything
from charrnn.core.tokenizers import build_tokenizer
from charrnn.core.version import FORMAT_VERSION
from charrnn.lm.config import ModelConfig
from charrnn.lm.model import LanguageModel
from charrnn.lm.training import train_language_model
from charrnn.lm.truncated_bptt import StreamBatches
from tests.support import tiny_config


def test_chunks_continue_each_stream() -> None:
    ids = torch.arange(3 * 50, dtype=torch.int32)
    batches = StreamBatches.from_ids(ids, batch_size=3, bptt=8)
    x0, y0 = batches.chunk(0)
    x1, _ = batches.chunk(1)
    assert x0.dtype == torch.long and x0.shape == (3, 8)
    assert torch.equal(y0[:, :-1], x0[:, 1:])
    assert torch.equal(x1[:, 0], y0[:, -1])  # row b of chunk 1 continues row b of chunk 0
    assert torch.equal(x0[:, 0], torch.tensor([0, 50, 100]))
    seen = torch.cat([batches.chunk(i)[1] for i in range(len(batches))], dim=1)
    assert seen.shape[1] == 49 and batches.n_tokens == 3 * 49


def test_state_carries_across_chunks_and_gradient_stops_at_the_boundary() -> None:
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=20, embed=8, hidden=12, layers=2, dropout=0.0))
    ids = torch.randint(3, 20, (2, 16))
    first, second = ids[:, :8], ids[:, 8:]
    whole, _ = model(ids)
    _, state = model(first)
    carried, _ = model(second, state)
    torch.testing.assert_close(carried, whole[:, 8:])  # carrying the state == one long pass
    fresh, _ = model(second)
    assert not torch.allclose(fresh, whole[:, 8:])

    h0 = tuple(torch.zeros(2, 2, 12, requires_grad=True) for _ in range(2))
    _, state = model(first, h0)
    out, _ = model(second, detach_state(state))
    out.sum().backward()
    assert all(h.grad is None for h in h0)  # nothing flowed back across the chunk boundary
    _, state = model(first, h0)
    out, _ = model(second, state)
    out.sum().backward()
    assert all(h.grad is not None and h.grad.abs().sum() > 0 for h in h0)  # control: it does without detach


def _flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.flatten().float() for _, v in sorted(state.items())])


def test_clipping_bounds_the_update(tmp_path: Path, corpus_file: Path) -> None:
    def one_step_change(clip: float, out: str) -> float:
        config = tiny_config(corpus_file, max_steps=1, optimizer="sgd", lr=1.0, clip=clip, schedule="constant")
        config.model.dropout = 0.0
        seed_everything(config.training.seed)  # the same initial weights train_language_model will draw
        config.model.vocab_size = build_tokenizer(corpus_file.read_text(), config.tokenizer).vocab_size
        before = _flat(LanguageModel(config.model).state_dict())
        train_language_model(config, tmp_path / out)
        saved, _ = load_tensors(tmp_path / out / "resume.safetensors")
        after = _flat({k.removeprefix("model."): v for k, v in saved.items() if k.startswith("model.")})
        return float((after - before).norm())

    # plain SGD with lr 1: the update is exactly the clipped gradient
    assert abs(one_step_change(1e-3, "small") - 1e-3) < 1e-5
    assert one_step_change(1e3, "large") > 1e-2


def test_tiny_model_overfits_tiny_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "abc.txt"
    corpus.write_text("the cat sat on the mat.\n" * 60, encoding="utf-8")
    config = tiny_config(corpus, max_steps=150, lr=1e-2, eval_every=50)
    config.model.dropout = 0.0
    result = train_language_model(config, tmp_path / "run")
    assert result.best_val_loss is not None and result.best_val_loss < 0.15


def test_same_seed_gives_identical_losses(tmp_path: Path, corpus_file: Path) -> None:
    losses = []
    for name in ("a", "b"):
        train_language_model(tiny_config(corpus_file), tmp_path / name)
        losses.append([r.get("train_loss", r.get("val_loss")) for r in read_metrics(tmp_path / name)])
    assert losses[0] == losses[1] and len(losses[0]) >= 4
    train_language_model(tiny_config(corpus_file, seed=8), tmp_path / "c")
    assert [r.get("train_loss", r.get("val_loss")) for r in read_metrics(tmp_path / "c")] != losses[0]


def test_best_weights_are_kept_with_config(tmp_path: Path, corpus_file: Path) -> None:
    result = train_language_model(tiny_config(corpus_file, max_steps=30, eval_every=5), tmp_path / "run")
    evals = [r for r in read_metrics(tmp_path / "run") if "val_loss" in r]
    best = min(evals, key=lambda r: r["val_loss"])
    _, meta = load_tensors(tmp_path / "run" / "model.safetensors")
    assert meta["step"] == best["step"] and result.best_val_loss == best["val_loss"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["hidden"] == 32 and saved["tokenizer"]["level"] == "char"
    assert saved["charrnn_version"] and saved["format_version"] == FORMAT_VERSION


def test_warmup_ramps_from_near_zero_below_the_floor() -> None:
    from charrnn.core.optim import learning_rate
    from charrnn.core.state import TrainState
    from charrnn.lm.config import LMTrainConfig

    cfg = LMTrainConfig(lr=6e-3, warmup_steps=1000, schedule="cosine")
    first = learning_rate(cfg, TrainState(step=0), total_steps=10_000)
    assert first == pytest.approx(6e-6) and first < cfg.min_lr
    assert learning_rate(cfg, TrainState(step=999), total_steps=10_000) == pytest.approx(
        learning_rate(LMTrainConfig(lr=6e-3, schedule="cosine"), TrainState(step=999), total_steps=10_000)
    )
