"""The classifier kind (N vs 1): pooling, class weights, --init-from, the shared engine (resume, overwrite, precision), the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import charrnn
from charrnn.core import precision, rundir
from charrnn.core.errors import CharRNNError
from charrnn.core.precision import PrecisionChoice
from charrnn.labelled.classifier import Classifier, concat_pool, last_state
from charrnn.labelled.config import ClassifierConfig
from charrnn.labelled.training import ClassifierRecipe, class_weights, read_training_data
from tests.support import TINY_LM

torch.set_num_threads(1)

NAMES = Path(__file__).resolve().parent / "data" / "names"
TINY = {"embed": 8, "hidden": 12, "batch_size": 8, "threads": 1, "device": "cpu", "eval_every": 5, "save_every": 5}


def toy_data(root: Path) -> Path:
    """Two labels a model tells apart from the first character: vowels or consonants."""
    folder = root / "toy"
    folder.mkdir()
    (folder / "soft.txt").write_text("\n".join(f"{a}{b}{c}" for a in "aeiou" for b in "aei" for c in "ou") + "\n")
    (folder / "hard.txt").write_text("\n".join(f"{a}{b}{c}" for a in "kptgd" for b in "kpt" for c in "gd") + "\n")
    return folder


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("classifier") / "run"
    charrnn.train(NAMES, task="classify", out=out, max_steps=10, **TINY)
    return out


def test_train_and_load_a_classifier(classifier_run: Path) -> None:
    run = charrnn.load(classifier_run)
    assert type(run).__name__ == "ClassifierRun" and run.kind == "classifier"
    assert run.labels == ["English", "Italian", "Japanese", "Russian", "Scottish"]
    results = run.classify(["Ivanov", "Rossi"])
    assert [r.text for r in results] == ["Ivanov", "Rossi"]
    for result in results:
        assert set(result.probabilities) == set(run.labels)
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert list(result.probabilities.values()) == sorted(result.probabilities.values(), reverse=True)
    alone = run.classify("Ivanov")[0].probabilities  # alone or beside another text: the same
    assert alone == pytest.approx(results[0].probabilities, abs=1e-6)
    info = run.info()
    assert info["labels"] == {"English": 27, "Italian": 18, "Japanese": 18, "Russian": 36, "Scottish": 5}
    saved = json.loads((classifier_run / "config.json").read_text())
    assert saved["kind"] == "classifier" and saved["model"]["n_labels"] == 5


def test_a_classifier_learns_an_easy_rule(tmp_path: Path) -> None:
    out = tmp_path / "toy-run"
    charrnn.train(toy_data(tmp_path), task="classify", out=out, max_steps=40, lr=0.02, warmup_steps=0, **TINY)
    run = charrnn.load(out)
    assert [r.label for r in run.classify(["aeo", "iiu", "kpd", "ttg"])] == ["soft", "soft", "hard", "hard"]
    assert run.evaluate(tmp_path / "toy").accuracy == 1.0


@pytest.mark.parametrize("pooling", ["last", "concat"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_changes_a_texts_logits(pooling: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    config = ClassifierConfig(
        vocab_size=12, n_labels=3, embed=6, hidden=5, layers=2, dropout=0.0, bidirectional=bidirectional,
        pooling=pooling,
    )  # fmt: skip
    model = Classifier(config).eval()
    short, long = [4, 5, 6], [7, 8, 9, 10, 11, 4, 5]
    alone = model(torch.tensor([short]), torch.tensor([3]))
    padded = model(torch.tensor([short + [0] * 4, long]), torch.tensor([3, 7]))
    assert torch.allclose(alone[0], padded[0], atol=1e-6)


def test_pooling_against_the_outputs_it_pools() -> None:
    torch.manual_seed(1)
    for bidirectional in (False, True):
        config = ClassifierConfig(
            vocab_size=9, n_labels=2, embed=4, hidden=3, layers=1, bidirectional=bidirectional
        )
        model = Classifier(config).eval()
        ids, lengths = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]]), torch.tensor([4, 2])
        outputs, state = model.core(ids, lengths=lengths)
        last = last_state(state, model.core.directions)
        for row, n in enumerate(lengths.tolist()):
            forward = outputs[row, n - 1, :3]  # the forward direction's output at the last real token
            assert torch.allclose(last[row, :3], forward, atol=1e-6)
            if bidirectional:  # the backward direction ends at the first token
                assert torch.allclose(last[row, 3:], outputs[row, 0, 3:], atol=1e-6)
            pooled = concat_pool(outputs, last, lengths)[row]
            width = outputs.shape[-1]
            assert torch.allclose(pooled[width : 2 * width], outputs[row, :n].amax(dim=0), atol=1e-6)
            assert torch.allclose(pooled[2 * width :], outputs[row, :n].mean(dim=0), atol=1e-6)


def test_balanced_class_weights() -> None:
    weights = class_weights([30, 10, 0])
    assert weights.tolist() == pytest.approx([40 / (3 * 30), 40 / (3 * 10), 0.0])
    logits, labels = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 1])
    nll = -F.log_softmax(logits, dim=-1)[torch.arange(2), labels]
    expected = (weights[0] * nll[0] + weights[1] * nll[1]) / (weights[0] + weights[1])
    assert Classifier.loss(logits, labels, weights).item() == pytest.approx(expected.item())


def test_balanced_weights_train_and_are_saved(tmp_path: Path) -> None:
    out = tmp_path / "weighted"
    result = charrnn.train(NAMES, task="classify", out=out, max_steps=4, class_weights="balanced", **TINY)
    assert result.best_val_loss is not None
    assert json.loads((out / "config.json").read_text())["training"]["class_weights"] == "balanced"


def test_resume_repeats_the_uninterrupted_run(tmp_path: Path) -> None:
    settings = {**TINY, "eval_every": 3, "save_every": 3, "schedule": "constant", "seed": 5}
    charrnn.train(NAMES, task="classify", out=tmp_path / "whole", max_steps=20, **settings)
    charrnn.train(NAMES, task="classify", out=tmp_path / "half", max_steps=11, **settings)
    charrnn.train(resume=tmp_path / "half", max_steps=20)
    whole, _ = rundir.load_tensors(tmp_path / "whole" / rundir.RESUME_FILE)
    half, _ = rundir.load_tensors(tmp_path / "half" / rundir.RESUME_FILE)
    for name in (k for k in whole if k.startswith(("model.", "optim."))):  # 20 steps cross epoch 1 (13 batches)
        assert torch.equal(whole[name], half[name]), name
    losses = [
        [r["train_loss"] for r in rundir.read_metrics(p) if "train_loss" in r]
        for p in (tmp_path / "whole", tmp_path / "half")
    ]
    assert losses[0] == losses[1]
    with pytest.raises(CharRNNError, match="cannot change when resuming"):
        charrnn.train(resume=tmp_path / "half", pooling="last")


def test_overwrite_replaces_a_run_and_its_absence_refuses(classifier_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    charrnn.train(NAMES, task="classify", out=out, max_steps=2, **TINY)
    with pytest.raises(CharRNNError, match="overwrite=True") as refused:  # the API's words for its keywords
        charrnn.train(NAMES, task="classify", out=out, max_steps=2, **TINY)
    assert "--overwrite" in refused.value.cli_message
    charrnn.train(NAMES, condition="label", out=out, max_steps=2, overwrite=True, **TINY)
    assert json.loads((out / "config.json").read_text())["kind"] == "conditional"


def test_precision_auto_trains_in_what_it_chose(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(precision, "auto_precision", lambda device_type, shape: PrecisionChoice("bf16", "test"))
    for options in ({"task": "classify"}, {"condition": "label"}):
        out = tmp_path / next(iter(options))
        result = charrnn.train(NAMES, out=out, max_steps=3, cell="gru", **options, **TINY)  # GRU: bf16 on any CPU
        assert result.best_val_loss is not None and result.best_val_loss == result.best_val_loss
        assert json.loads((out / "config.json").read_text())["training"]["resolved_precision"] == "bf16"


@pytest.fixture(scope="module")
def language_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny character language model on the names' text."""
    root = tmp_path_factory.mktemp("lm")
    text = "".join(p.read_text() for p in sorted(NAMES.glob("*.txt")))
    (root / "names.txt").write_text(text, encoding="utf-8")
    options = {**TINY_LM, "embed": 8, "hidden": 12, "layers": 1, "bptt": 8}
    charrnn.train(root / "names.txt", out=root / "lm", max_steps=3, eval_every=3, **options)
    return root / "lm"


def test_init_from_copies_the_language_models_embedding_and_core(language_model: Path, tmp_path: Path) -> None:
    config, _ = charrnn.api.effective_config(NAMES, task="classify", init_from=str(language_model), **TINY)
    assert (config.model.embed, config.model.hidden, config.model.layers) == (8, 12, 1)  # the LM's shape, taken
    recipe = ClassifierRecipe()
    data = read_training_data(config)
    tokenizer = recipe.build_tokenizers(config, data)
    prepared = recipe.prepare(config, tokenizer, data, torch.device("cpu"), charrnn.core.state.SilentReporter())
    lm = charrnn.load(language_model)
    assert rundir.tokenizers_fingerprint(tokenizer) == rundir.tokenizers_fingerprint(lm.tokenizer)
    ours = prepared.task.model.core.state_dict()
    for name, tensor in lm.model.core.state_dict().items():
        assert torch.equal(ours[name], tensor), name
    assert any(name.endswith("_reverse") for name in ours)  # the backward direction starts fresh
    assert any("embedding and recurrent core from" in note for note in prepared.info["notes"])


def test_init_from_refuses_what_does_not_fit(language_model: Path, classifier_run: Path, tmp_path: Path) -> None:
    with pytest.raises(CharRNNError, match="(?<!-)hidden 64 differs from the language model") as refused:
        charrnn.api.effective_config(
            NAMES, task="classify", init_from=str(language_model), **{**TINY, "hidden": 64}
        )
    assert "--hidden 64 differs" in refused.value.cli_message
    with pytest.raises(CharRNNError, match="(?<!-)level word differs"):
        charrnn.api.effective_config(NAMES, task="classify", init_from=str(language_model), level="word")
    with pytest.raises(CharRNNError, match="holds a run of kind 'classifier', not 'lm'"):
        charrnn.api.effective_config(NAMES, task="classify", init_from=str(classifier_run))
    config, _ = charrnn.api.effective_config(NAMES, task="classify", init_from=str(language_model))
    config.model.hidden = 7  # a config built by hand, past the API's completion: the recipe refuses it too
    with pytest.raises(CharRNNError, match="model.hidden 7 is not the language model's 12"):
        ClassifierRecipe().build_tokenizers(config, read_training_data(config))


@pytest.mark.parametrize("pooling", ["last", "concat"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_one_pass_prefix_logits_equal_each_prefix_read_alone(cell: str, pooling: str) -> None:
    torch.manual_seed(0)
    config = ClassifierConfig(vocab_size=11, n_labels=4, cell=cell, embed=6, hidden=7, layers=2, dropout=0.0,
                              bidirectional=False, pooling=pooling)  # fmt: skip
    model = Classifier(config).eval()
    ids = torch.randint(3, 11, (9,))
    with torch.no_grad():
        one_pass = model.prefix_logits(ids)
        each = torch.cat([model(ids[None, :t], torch.tensor([t])) for t in range(1, len(ids) + 1)])
    torch.testing.assert_close(one_pass, each, atol=1e-5, rtol=1e-5)
    two_way = Classifier(ClassifierConfig(vocab_size=11, n_labels=4, embed=6, hidden=7, bidirectional=True))
    with pytest.raises(ValueError, match="one-way core"):
        two_way.prefix_logits(ids)
