"""Library features added for speed: time-budget cosine, mixed precision, batched sampling bookkeeping."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from charrnn.core.config import TokenizerConfig, TrainConfig
from charrnn.core.errors import CharRNNError
from charrnn.core.optim import learning_rate
from charrnn.core.rundir import read_metrics
from charrnn.core.sampling import SampleSettings
from charrnn.core.special_tokens import EOS_ID
from charrnn.core.state import TrainState
from charrnn.core.tokenizers import build_tokenizer
from charrnn.lm.config import LMTrainConfig, ModelConfig, RunConfig
from charrnn.lm.model import LanguageModel
from charrnn.lm.sampling import generate
from charrnn.lm.training import train_language_model

TEXT = "the quick brown fox jumps over the lazy dog\nhow vexingly quick daft zebras jump\n" * 40


def _config(tmp_path: Path, **training) -> RunConfig:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    return RunConfig(
        tokenizer=TokenizerConfig(level="char"),
        model=ModelConfig(embed=8, hidden=16, layers=1, dropout=0.0),
        training=LMTrainConfig(batch_size=4, bptt=16, threads=1, **training),
        corpus=str(corpus),
    )


def test_cosine_follows_the_time_budget_when_it_runs_out_first() -> None:
    cfg = LMTrainConfig(schedule="cosine", lr=1.0, min_lr=0.0, min_lr_fraction=0.0, warmup_steps=0)
    state = TrainState(step=0)
    assert learning_rate(cfg, state, total_steps=1000) == pytest.approx(1.0)
    assert learning_rate(cfg, state, total_steps=1000, time_progress=0.5) == pytest.approx(0.5)
    assert learning_rate(cfg, state, total_steps=1000, time_progress=1.7) == pytest.approx(0.0, abs=1e-12)
    state.step = 750  # steps ahead of time: the step fraction wins
    assert learning_rate(cfg, state, total_steps=1000, time_progress=0.1) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 0.75))
    )


def test_time_budget_run_decays_the_rate_and_logs_elapsed(tmp_path: Path) -> None:
    config = _config(tmp_path, schedule="cosine", max_time=0.05, eval_every=5, lr=1e-2, min_lr=0.0, warmup_steps=0)
    assert config.training.min_lr_fraction == 0.02  # the LM default: cosine ends at 2% of the peak
    result = train_language_model(config, tmp_path / "run")
    assert result.stop_reason == "max_time"
    records = read_metrics(tmp_path / "run")
    evals = [r for r in records if "val_loss" in r]
    assert evals and all("elapsed" in r for r in evals)
    rates = [r["lr"] for r in records if "lr" in r]
    assert rates[-1] < rates[0]


def cpu_runs_bf16_lstm() -> bool:
    """Whether this CPU's oneDNN has a bfloat16 LSTM kernel (it needs avx512_bf16 or AMX)."""
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(2, 2)(torch.zeros(1, 1, 2))
    except RuntimeError:
        return False
    return True


def test_bf16_autocast_trains_on_cpu_or_is_refused_in_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path, precision="bf16", max_steps=3)
    if cpu_runs_bf16_lstm():
        result = train_language_model(config, tmp_path / "run")
        assert result.steps == 3 and result.skipped_steps == 0
        assert result.last_val_loss is not None and math.isfinite(result.last_val_loss)
    else:  # before any file is written, not as oneDNN's traceback at the first step
        with pytest.raises(CharRNNError, match="--precision bf16 is not supported for the LSTM cell on this CPU"):
            train_language_model(config, tmp_path / "run")
        assert not (tmp_path / "run").exists()
    gru = _config(tmp_path, precision="bf16", max_steps=3)
    gru.model.cell = "gru"  # the GRU runs under bf16 autocast with or without bf16 instructions
    assert train_language_model(gru, tmp_path / "gru").steps == 3


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(CharRNNError, match="precision"):
        LMTrainConfig(precision="fp8").validate()


def test_cli_offers_precision_and_compile() -> None:
    from typer.testing import CliRunner

    from charrnn.cli import app

    out = CliRunner().invoke(app, ["train", "--help"], terminal_width=200).output
    assert "--precision" in out and "--compile" in out


def test_batched_sampling_keeps_rows_apart_and_stops_at_eos() -> None:
    tokenizer = build_tokenizer(TEXT, TokenizerConfig(level="char"))
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, embed=8, hidden=16, layers=1))
    settings = SampleSettings(length=30, num=5, seed=3, until_eos=True)
    rows = generate(model, tokenizer, "the", settings)
    assert len(rows) == 5
    for ids in rows:
        assert 1 <= len(ids) <= 30
        assert EOS_ID not in ids[:-1]  # a row stops at its first <eos>
    again = generate(model, tokenizer, "the", SampleSettings(length=30, num=5, seed=3, until_eos=True))
    assert again == rows


def test_language_model_init_follows_the_pytorch_example() -> None:
    model = LanguageModel(ModelConfig(vocab_size=40, embed=8, hidden=16, layers=2))
    forget = model.core.rnn.bias_ih_l0[16:32]
    assert forget.abs().max() <= 1 / 16**0.5  # PyTorch's default, not a forget-gate bias of 1
    assert model.head.weight.abs().max() <= 0.1 and bool((model.head.bias == 0).all())


def test_scoring_is_the_same_in_any_batch_size() -> None:
    from charrnn.lm.scoring import score_token_ids

    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=30, embed=8, hidden=16, layers=2)).eval()
    seqs = [[3 + (i * j) % 27 for j in range(1 + i % 9)] + [EOS_ID] for i in range(40)]
    default = score_token_ids(model, seqs)
    tiny = score_token_ids(model, seqs, max_batch_tokens=8)
    for a, b in zip(default, tiny, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_cosine_ends_at_a_fraction_of_the_peak() -> None:
    cfg = LMTrainConfig(schedule="cosine", lr=6e-3, min_lr=1e-5)
    assert learning_rate(cfg, TrainState(step=100), total_steps=100) == pytest.approx(1.2e-4)  # 2% (LM default)
    cfg = TrainConfig(schedule="cosine", lr=6e-3, min_lr=1e-5)
    assert learning_rate(cfg, TrainState(step=100), total_steps=100) == pytest.approx(6e-4)  # 10% (engine default)
    cfg = LMTrainConfig(schedule="cosine", lr=6e-3, min_lr=5e-4)
    assert learning_rate(cfg, TrainState(step=100), total_steps=100) == pytest.approx(5e-4)  # --min-lr floors it


def test_adam_optimizers_use_the_fused_kernel_on_cpu() -> None:
    from charrnn.core.optim import make_optimizer

    model = LanguageModel(ModelConfig(vocab_size=30, embed=8, hidden=16, layers=1))
    for name in ("adamw", "adam"):
        optimizer = make_optimizer(model, LMTrainConfig(optimizer=name))
        assert optimizer.param_groups[0]["fused"] is True
