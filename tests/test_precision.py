"""`--precision auto`: the decision on any machine (facts injected), its cache, what a run saves, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import charrnn
from charrnn.core import precision
from charrnn.core.precision import PrecisionChoice, ProbeShape, decide, read_cpu_flags
from charrnn.core.resume import RESUME_FILE
from charrnn.core.rundir import load_tensors
from charrnn.lm.training import train_language_model
from tests.support import tiny_config

TEXT = "the quick brown fox jumps over the lazy dog\nhow vexingly quick daft zebras jump\n" * 30


def never(*_args) -> bool:
    raise AssertionError("a probe ran that the flags should have ruled out")


@pytest.mark.parametrize(
    ("facts", "expected", "reason"),
    [
        ({"device_type": "cuda", "cuda_bf16": True}, "bf16", "supports bf16"),
        ({"device_type": "cuda", "cuda_bf16": False}, "fp32", "no bf16 support"),
        ({"device_type": "mps"}, "fp32", "not mps"),
        ({"device_type": "cpu", "cpu_flags": frozenset({"avx2", "avx512f"})}, "fp32", "reports no bf16"),
        (
            {"device_type": "cpu", "cpu_flags": frozenset({"avx512_bf16"}), "kernel_runs": lambda: False},
            "fp32",
            "has avx512_bf16 but PyTorch has no bf16 LSTM kernel",
        ),
        (
            {"device_type": "cpu", "cpu_flags": frozenset({"amx_bf16"}), "kernel_runs": lambda: True, "speedup": lambda: 1.1},
            "fp32",
            "bf16 ran 1.10x fp32 speed on this CPU, under the 1.2x",
        ),
        (
            {"device_type": "cpu", "cpu_flags": frozenset({"avx512_bf16"}), "kernel_runs": lambda: True, "speedup": lambda: 1.45},
            "bf16",
            "has avx512_bf16 and bf16 ran 1.45x fp32 speed",
        ),
    ],
)  # fmt: skip
def test_auto_decides_from_the_device_facts(facts: dict, expected: str, reason: str) -> None:
    facts = {"kernel_runs": never, "speedup": never, **facts}
    choice = decide(facts.pop("device_type"), **facts)
    assert choice.precision == expected
    assert reason in choice.reason


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\nbogomips\t: 1\n")
    assert read_cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512f", "avx512_bf16", "amx_tile"}
    assert read_cpu_flags(tmp_path / "absent") == frozenset()


def test_auto_detects_once_per_process(monkeypatch) -> None:
    reads: list[int] = []

    def flags() -> frozenset[str]:
        reads.append(1)
        return frozenset({"avx2"})

    monkeypatch.setattr(precision, "read_cpu_flags", flags)
    precision.auto_precision.cache_clear()
    try:
        shape = ProbeShape("lstm", 8, 16, 1, 20, 4, 16)
        first = precision.resolve_precision("auto", torch.device("cpu"), shape)
        again = precision.resolve_precision("auto", torch.device("cpu"), shape)
        assert first == again == PrecisionChoice("fp32", first.reason) and len(reads) == 1
        assert precision.resolve_precision("bf16", torch.device("cpu"), shape).precision == "bf16"
    finally:
        precision.auto_precision.cache_clear()


def test_a_measured_auto_decision_is_kept_for_later_processes(tmp_path: Path, monkeypatch) -> None:
    """The speed probe runs once per machine, torch version, threads, cell and shape; then it is read back."""
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "read_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setattr(precision, "bf16_kernel_runs", lambda cell, device: True)
    probes: list[ProbeShape] = []

    def measure(shape: ProbeShape, device: torch.device) -> float:
        probes.append(shape)
        return 1.5

    monkeypatch.setattr(precision, "measure_speedup", measure)
    shape = ProbeShape("lstm", 8, 16, 1, 20, 4, 16)

    def auto(shape: ProbeShape = shape) -> PrecisionChoice:
        precision.auto_precision.cache_clear()  # as a new process would start
        return precision.resolve_precision("auto", torch.device("cpu"), shape)

    try:
        first = auto()
        assert first.precision == "bf16" and len(probes) == 1
        again = auto()
        assert again.precision == "bf16" and len(probes) == 1 and "kept in the cache" in again.reason
        assert list((tmp_path / "cache" / "precision").glob("auto-*.json"))
        auto(ProbeShape("gru", 8, 16, 1, 20, 4, 16))  # another cell: probed again
        monkeypatch.setattr(torch, "__version__", "9.9.9")  # another torch: probed again
        auto()
        assert len(probes) == 3
    finally:
        precision.auto_precision.cache_clear()


def test_speed_probe_leaves_the_random_streams_alone() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    ratio = precision.measure_speedup(ProbeShape("gru", 8, 16, 1, 20, 4, 8), torch.device("cpu"), rounds=1)
    assert ratio > 0 and torch.equal(torch.rand(3), expected)


def test_auto_with_every_probe_leaves_the_random_streams_alone(tmp_path: Path, monkeypatch) -> None:
    # A CPU that claims bf16 makes auto build a kernel-check layer and a speed-probe model; neither may
    # consume the seeded stream, or a run under auto would start from other weights than under fp32.
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))  # no decision kept from an earlier test
    monkeypatch.setattr(precision, "read_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setattr(precision, "bf16_kernel_runs", lambda cell, device: torch.nn.LSTM(2, 2) is not None)
    precision.auto_precision.cache_clear()
    try:
        torch.manual_seed(5)
        expected = torch.rand(3)
        torch.manual_seed(5)
        precision.resolve_precision("auto", torch.device("cpu"), ProbeShape("gru", 8, 16, 1, 20, 4, 8))
        assert torch.equal(torch.rand(3), expected)
    finally:
        precision.auto_precision.cache_clear()


class Recorder:
    """A reporter that keeps the start info."""

    def start(self, info: dict) -> None:
        self.info = info

    def step(self, record: dict) -> None: ...

    def evaluate(self, record: dict) -> None: ...

    def message(self, text: str) -> None: ...


def auto_gives(monkeypatch, choice: str) -> None:
    """Make auto pick `choice` on this machine, whatever its CPU."""
    monkeypatch.setattr(precision, "auto_precision", lambda device_type, shape: PrecisionChoice(choice, "test"))


def gru_config(tmp_path: Path, **training):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    config = tiny_config(corpus, **{"eval_every": 3, "save_every": 3, "lr": 0.05, **training})
    config.model.cell = "gru"  # runs under CPU bf16 autocast with or without bf16 instructions
    return config


def test_auto_is_the_default_and_the_choice_is_saved_and_reported(tmp_path: Path, monkeypatch) -> None:
    config = gru_config(tmp_path, max_steps=2)
    assert config.training.precision == "auto"
    auto_gives(monkeypatch, "bf16")
    reporter = Recorder()
    train_language_model(config, tmp_path / "run", reporter=reporter)
    assert reporter.info["precision"] == "bf16" and reporter.info["precision_reason"] == "test"
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert saved["precision"] == "auto" and saved["resolved_precision"] == "bf16"
    info = charrnn.load(tmp_path / "run").info()
    assert info["precision"] == "bf16 (auto)" and info["config"]["training"]["resolved_precision"] == "bf16"


def test_bf16_keeps_master_weights_and_optimiser_state_in_fp32(tmp_path: Path, monkeypatch) -> None:
    auto_gives(monkeypatch, "bf16")
    train_language_model(gru_config(tmp_path, max_steps=3), tmp_path / "run")
    tensors, _ = load_tensors(tmp_path / "run" / RESUME_FILE)
    floats = {
        name: t.dtype
        for name, t in tensors.items()
        if name.startswith(("model.", "optim.")) and t.is_floating_point()
    }
    assert floats and set(floats.values()) == {torch.float32}
    model = charrnn.load(tmp_path / "run").model
    ids = torch.randint(3, 20, (2, 5))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden, _ = model(ids)
        assert model.head(hidden).dtype == torch.bfloat16  # the matrix products do run in bf16
        assert model.loss(hidden, ids).dtype == torch.float32
        assert model.log_probs(hidden).dtype == torch.float32


def test_resumed_auto_run_keeps_its_choice_and_is_bit_exact(tmp_path: Path, monkeypatch) -> None:
    auto_gives(monkeypatch, "bf16")
    train_language_model(gru_config(tmp_path, max_steps=8), tmp_path / "whole")
    train_language_model(gru_config(tmp_path, max_steps=4), tmp_path / "run")
    auto_gives(monkeypatch, "fp32")  # were auto asked again, the resumed half would train in fp32
    charrnn.train(resume=tmp_path / "run", max_steps=8)
    train_language_model(gru_config(tmp_path, max_steps=8), tmp_path / "fp32")
    whole, resumed, fp32 = (load_tensors(tmp_path / name / RESUME_FILE)[0] for name in ("whole", "run", "fp32"))
    for name, tensor in whole.items():
        if name.startswith(("model.", "optim.")):
            assert torch.equal(tensor, resumed[name]), name
    assert any(not torch.equal(t, fp32[n]) for n, t in whole.items() if n.startswith("model."))
    assert json.loads((tmp_path / "fp32" / "config.json").read_text())["training"]["resolved_precision"] == "fp32"


def test_explicit_precision_on_resume_replaces_the_auto_choice(tmp_path: Path, monkeypatch) -> None:
    auto_gives(monkeypatch, "bf16")
    train_language_model(gru_config(tmp_path, max_steps=3), tmp_path / "run")
    charrnn.train(resume=tmp_path / "run", max_steps=5, precision="fp32")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["training"]
    assert saved["precision"] == "fp32" and saved["resolved_precision"] == "fp32"


def test_scoring_is_fp32_unless_bf16_is_asked_for(tmp_path: Path, capsys) -> None:
    from charrnn.cli import main
    from charrnn.core.errors import CharRNNError

    train_language_model(gru_config(tmp_path, max_steps=3, precision="fp32"), tmp_path / "run")
    run = charrnn.load(tmp_path / "run")
    sentences = ["the lazy dog", "how quick daft zebras jump"]
    exact = [s.logprob for s in run.score(sentences)]
    assert [s.logprob for s in run.score(sentences, precision="fp32")] == exact
    approx = [s.logprob for s in run.score(sentences, precision="bf16")]
    assert approx != exact and approx == pytest.approx(exact, rel=0.05)
    with pytest.raises(CharRNNError, match="choose fp32 or bf16"):
        run.score(sentences, precision="fp16")
    with pytest.raises(SystemExit) as info:
        main(["score-sentence", str(tmp_path / "run"), "the dog", "--precision", "fp16"])
    assert info.value.code == 1 and capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_adaptive_softmax_takes_bf16_hidden_states_under_autocast(cell: str) -> None:
    # Under bf16 autocast the adaptive head runs in fp32 whatever the cell returns (fp32 or bf16 states).
    from charrnn.lm.config import ModelConfig
    from charrnn.lm.model import LanguageModel

    torch.manual_seed(0)
    config = ModelConfig(cell=cell, embed=16, hidden=16, layers=1, vocab_size=400, softmax="adaptive")
    model = LanguageModel(config).eval()
    hidden = torch.randn(2, 5, 16)
    targets = torch.randint(3, 400, (2, 5))
    model.requires_grad_(False)
    exact = model.loss(hidden, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        from_fp32 = model.loss(hidden, targets)
        from_bf16 = model.loss(hidden.bfloat16(), targets)
        log_probs = model.log_probs(hidden.bfloat16())
    assert from_fp32.dtype == from_bf16.dtype == log_probs.dtype == torch.float32
    assert torch.equal(from_fp32, exact)  # the head itself is exact fp32
    assert from_bf16.item() == pytest.approx(exact.item(), rel=0.02)  # only the states were rounded
