"""The label-conditioned language model (1 vs N): scores against a one-step-at-a-time reference, state reset per
example, the Bayes classifier, sampling in a chosen or drawn label."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import charrnn
from charrnn.core.errors import CharRNNError
from charrnn.core.special_tokens import EOS_ID
from charrnn.labelled.conditional import ConditionalLanguageModel, log_prior, score_with_labels
from charrnn.labelled.config import ConditionalModelConfig
from charrnn.labelled.examples import EncodedExamples
from charrnn.labelled.training import mean_nats_per_token

torch.set_num_threads(1)

NAMES = Path(__file__).resolve().parent / "data" / "names"
TINY = {"embed": 8, "hidden": 12, "layers": 1, "batch_size": 8, "threads": 1, "device": "cpu", "eval_every": 5}


@pytest.fixture(scope="module", params=["input", "state"])
def conditional_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("conditional") / request.param
    charrnn.train(NAMES, condition="label", out=out, max_steps=6, label_as=request.param, cell="lstm", **TINY)
    return out


def one_step_at_a_time(model: ConditionalLanguageModel, ids: list[int], label: int) -> float:
    """log P(ids + <eos> | label), feeding one token at a time and carrying the state: the reference."""
    labels = torch.tensor([label])
    total, state, previous = 0.0, None, EOS_ID
    with torch.inference_mode():
        for target in [*ids, EOS_ID]:
            hidden, state = model(torch.tensor([[previous]]), state, labels=labels)
            total += float(F.log_softmax(model.head(hidden[0, -1]), dim=-1)[target])
            previous = target
    return total


def test_score_is_the_sum_of_one_step_log_softmaxes(conditional_run: Path) -> None:
    run = charrnn.load(conditional_run)
    assert type(run).__name__ == "ConditionalRun"
    texts = ["Ivanov", "Rossi", "Suzuki", "O'Neill"]
    for label in ("Russian", "Japanese"):
        scores = run.score(texts, label, oov="include")
        for text, score in zip(texts, scores, strict=True):
            expected = one_step_at_a_time(run.model, run.tokenizer.encode_line(text), run.label_index(label))
            assert score.logprob == pytest.approx(expected, abs=1e-4)
            assert score.n_tokens == len(text) + 1  # the closing <eos> counts


def test_a_texts_score_does_not_depend_on_the_example_before_it(conditional_run: Path) -> None:
    run = charrnn.load(conditional_run)
    encode = run.tokenizer.encode_line
    target = encode("Petrov") + [EOS_ID]
    for before in ("Abe", "Castellano", "Smith"):
        (_, after_a), (_, after_b) = (
            score_with_labels(run.model, [encode(before) + [EOS_ID], target], [0, 3]),
            score_with_labels(run.model, [encode("Zz") + [EOS_ID], target], [2, 3]),
        )
        assert sum(after_a) == pytest.approx(sum(after_b), abs=1e-5)
    # validation's mean reads the same numbers: −Σ log P / tokens over the examples, in batches
    examples = EncodedExamples([encode("Petrov"), encode("Abe"), encode("Castellano")], [3, 2, 1])
    logps = score_with_labels(run.model, [ids + [EOS_ID] for ids in examples.ids], examples.labels)
    expected = -sum(map(sum, logps)) / sum(len(ids) + 1 for ids in examples.ids)
    assert mean_nats_per_token(run.model, examples) == pytest.approx(expected, abs=1e-5)


def test_the_bayes_classifier_is_bayes_rule(conditional_run: Path) -> None:
    run = charrnn.load(conditional_run)
    texts = ["Ivanov", "Tanaka"]
    likelihood = torch.tensor([[run.score(t, y, oov="include")[0].logprob for y in run.labels] for t in texts])
    prior = torch.tensor(log_prior(run.config.label_counts))
    expected = torch.softmax(likelihood.double() + prior.double(), dim=1)
    for text, row, result in zip(texts, expected, run.classify(texts), strict=True):
        assert result.text == text
        for label, p in result.probabilities.items():
            assert p == pytest.approx(float(row[run.labels.index(label)]), abs=1e-5)


def test_samples_in_a_label_or_drawn_from_the_prior(conditional_run: Path) -> None:
    run = charrnn.load(conditional_run)
    texts = run.sample(label="Russian", num=5, seed=3, length=30)
    assert len(texts) == 5 and all("\n" not in t and len(t) <= 30 for t in texts)
    assert run.sample(label="Russian", num=5, seed=3, length=30) == texts  # a seed repeats them
    assert all(t.startswith("Iv") for t in run.sample(label="Russian", num=3, prime="Iv", seed=1))
    pairs = run.sample_with_labels(num=4, seed=2, length=20)
    assert all(label in run.labels for label, _ in pairs)
    drawn = run.draw_labels(4000, seed=0)
    counts = run.label_counts()
    for label, count in counts.items():  # the training prior, within sampling error
        assert drawn.count(label) / 4000 == pytest.approx(count / sum(counts.values()), abs=0.03)
    with pytest.raises(CharRNNError, match="Unknown label 'Klingon'; this run's labels are: English, Italian"):
        run.sample(label="Klingon")
    with pytest.raises(CharRNNError, match="Unknown label"):
        run.score("Ivanov", "klingon")


def test_how_the_label_enters_the_model() -> None:
    base = {"vocab_size": 10, "n_labels": 3, "embed": 4, "hidden": 5, "layers": 2, "dropout": 0.0}
    inputs = ConditionalLanguageModel(ConditionalModelConfig(**base, label_embed=3, label_as="input"))
    assert inputs.core.rnn.weight_ih_l0.shape == (20, 4 + 3)  # the label joins every step's input
    state = ConditionalLanguageModel(ConditionalModelConfig(**base, label_embed=3, label_as="state"))
    assert state.core.rnn.weight_ih_l0.shape == (20, 4) and state.label_state.out_features == 2 * 2 * 5
    plain = ConditionalLanguageModel(ConditionalModelConfig(**base, label_as="none"))
    assert not hasattr(plain, "label_embedding")
    ids = torch.tensor([[EOS_ID, 4, 5, 6]])
    for model, depends in ((inputs, True), (state, True), (plain, False)):
        model.eval()
        a = model(ids, labels=torch.tensor([0]))[0]
        b = model(ids, labels=torch.tensor([1]))[0]
        assert (not torch.allclose(a, b)) == depends


def test_a_conditional_model_learns_its_labels(tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "soft.txt").write_text("\n".join(f"{a}{b}{c}" for a in "aeiou" for b in "aei" for c in "ou") + "\n")
    (folder / "hard.txt").write_text("\n".join(f"{a}{b}{c}" for a in "kptgd" for b in "kpt" for c in "gd") + "\n")
    out = tmp_path / "run"
    charrnn.train(folder, condition="label", out=out, max_steps=60, lr=0.02, warmup_steps=0, **TINY)
    run = charrnn.load(out)
    assert [r.label for r in run.classify(["aei", "ouo", "kpg", "dtd"])] == ["soft", "soft", "hard", "hard"]
    soft = "".join(run.sample(label="soft", num=20, seed=1, length=5))
    hard = "".join(run.sample(label="hard", num=20, seed=1, length=5))
    assert sum(c in "aeiou" for c in soft) > 0.9 * len(soft)
    assert sum(c in "kptgd" for c in hard) > 0.9 * len(hard)
    report = run.evaluate(folder)
    assert report.accuracy == 1.0 and report.extra["nats_per_token"] < 1.5


def test_resume_repeats_the_uninterrupted_run(tmp_path: Path) -> None:
    from charrnn.core import rundir

    settings = {**TINY, "eval_every": 3, "save_every": 3, "schedule": "constant", "seed": 4, "label_as": "state"}
    charrnn.train(NAMES, condition="label", out=tmp_path / "whole", max_steps=16, **settings)
    charrnn.train(NAMES, condition="label", out=tmp_path / "half", max_steps=7, **settings)
    assert charrnn.train(resume=tmp_path / "half", max_steps=16).steps == 16
    whole, _ = rundir.load_tensors(tmp_path / "whole" / rundir.RESUME_FILE)
    half, _ = rundir.load_tensors(tmp_path / "half" / rundir.RESUME_FILE)
    for name in (k for k in whole if k.startswith(("model.", "optim."))):
        assert torch.equal(whole[name], half[name]), name
