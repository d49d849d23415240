"""`charrnn serve` for the labelled kinds: a conditional run's label on Generate and Score, the Classify route
(P(label | the text so far) after every token), against the library's own answers, on a real uvicorn."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install 'charrnn[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'charrnn[serve]'")

import charrnn  # noqa: E402
from charrnn.labelled.conditional import log_prior  # noqa: E402
from charrnn.serve.app import create_app  # noqa: E402
from charrnn.serve.params import Limits  # noqa: E402
from tests.serve_support import call, events, serving, train_labelled_runs  # noqa: E402
from tests.support import run_cli  # noqa: E402

TEXT = "Ivanov"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, trained_run: Path) -> dict:
    classifier, conditional = train_labelled_runs(tmp_path_factory.mktemp("serve-labelled"))
    return {
        "classifier": charrnn.load(classifier),
        "conditional": charrnn.load(conditional),
        "lm": charrnn.load(trained_run),
    }


@pytest.fixture(scope="module")
def url(runs: dict):
    with serving(create_app(runs, Limits(max_length=300, max_text=200))) as base:
        yield base


def test_info_lists_the_labels_with_their_counts_in_model_order(url: str, runs: dict) -> None:
    for name in ("classifier", "conditional"):
        status, info = call(url + f"/api/info?run={name}")
        assert status == 200 and info["kind"] == name
        assert info["label_counts"] == [{"label": x, "count": n} for x, n in runs[name].label_counts().items()]
        assert [x["label"] for x in info["label_counts"]] == [
            "English",
            "Italian",
            "Japanese",
            "Russian",
            "Scottish",
        ]
    assert "label_counts" not in call(url + "/api/info?run=lm")[1]
    assert [r["kind"] for r in call(url + "/api/info")[1]["runs"]] == ["classifier", "conditional", "lm"]


def test_sampling_with_a_label_returns_texts_of_that_label(url: str, runs: dict) -> None:
    run = runs["conditional"]
    settings = {"run": "conditional", "label": "Russian", "num": 3, "seed": 3, "length": 30}
    status, body = call(url + "/api/sample", settings)
    expected = run.sample_with_labels("Russian", num=3, seed=3, length=30)
    assert status == 200 and [(s["label"], s["text"]) for s in body["samples"]] == expected
    assert (body["label"], body["text"]) == expected[0]
    streamed = events(url + "/api/sample", {**settings, "stream": True})
    assert streamed == [(None, {"label": x, "text": t}) for x, t in expected] + [("done", {})]


def test_sampling_without_a_label_draws_each_from_the_prior_and_says_which(url: str, runs: dict) -> None:
    status, body = call(
        url + "/api/sample", {"run": "conditional", "num": 4, "seed": 2, "length": 20, "label": None}
    )
    expected = runs["conditional"].sample_with_labels(num=4, seed=2, length=20)
    assert status == 200 and [(s["label"], s["text"]) for s in body["samples"]] == expected
    assert all(s["label"] in runs["conditional"].labels for s in body["samples"])


def test_score_under_a_label_is_log_p_of_the_text_given_the_label(url: str, runs: dict) -> None:
    status, body = call(url + "/api/score", {"run": "conditional", "text": "Ivanov\nRossi", "label": "Italian"})
    want = runs["conditional"].score(["Ivanov", "Rossi"], "Italian")
    assert status == 200 and body["label"] == "Italian"
    for got, score in zip(body["sentences"], want, strict=True):
        assert got["logprob"] == pytest.approx(score.logprob, abs=1e-5) and got["tokens"] == score.tokens


BAD_REQUESTS = [
    (
        "/api/sample",
        {"run": "conditional", "label": "Klingon"},
        400,
        'Unknown label "Klingon"; this run\'s labels are: English, Italian',
    ),
    ("/api/sample", {"run": "conditional", "label": 3}, 400, "Unknown label 3"),
    ("/api/sample", {"run": "conditional", "num": 21}, 400, "num must be between 1 and 20"),
    ("/api/sample", {"run": "conditional", "temperature": 0}, 400, "temperature must be greater than 0"),
    ("/api/sample", {"run": "conditional", "prime": "€€"}, 400, "never saw"),
    ("/api/sample", {"run": "lm", "label": "Russian"}, 400, "label is for conditional language models"),
    ("/api/sample", {"run": "lm", "num": 2}, 400, "num is for conditional language models"),
    ("/api/sample", {"run": "classifier"}, 400, "classifier run; this route is for language models"),
    ("/api/score", {"run": "conditional", "text": TEXT}, 400, "label is required; this run's labels are: English"),
    ("/api/score", {"run": "conditional", "text": TEXT, "label": "Klingon"}, 400, "Unknown label"),
    ("/api/score", {"run": "classifier", "text": TEXT}, 400, "use /api/classify"),
    ("/api/score", {"run": "lm", "text": TEXT, "label": "Russian"}, 400, "label is for conditional"),
    ("/api/activations", {"run": "conditional", "text": TEXT}, 400, "this route is for language models"),
    ("/api/memory", {"run": "classifier", "text": TEXT, "position": 1}, 400, "this route is for language models"),
    ("/api/translate", {"run": "classifier", "text": TEXT}, 400, "a classifier, not a seq2seq run"),
    ("/api/classify", {"run": "lm", "text": TEXT}, 400, "/api/classify is for classifier and conditional"),
    ("/api/classify", {"run": "classifier", "text": "  "}, 400, "text is empty"),
    ("/api/classify", {"run": "classifier"}, 400, "text is required"),
    ("/api/classify", {"run": "classifier", "text": "x" * 201}, 413, "the limit is 200"),
    ("/api/classify", {"run": "classifier", "text": TEXT, "top_k": 0}, 400, "top_k must be between 1 and 100"),
    ("/api/classify", {"run": "classifier", "text": TEXT, "top_k": "all"}, 400, "top_k must be an integer"),
    ("/api/classify", {"run": "classifier", "text": TEXT, "k": 2}, 400, 'Unknown key(s) "k" for /api/classify'),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_one_line_message(
    url: str, path: str, body: dict, status: int, message: str
) -> None:
    got, answer = call(url + path, body)
    assert (got, set(answer)) == (status, {"error"}) and message in answer["error"], answer
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]


def test_classify_reads_the_classifier_on_every_prefix(url: str, runs: dict) -> None:
    run = runs["classifier"]
    status, body = call(url + "/api/classify", {"run": "classifier", "text": TEXT, "top_k": 5})
    assert status == 200 and body["tokens"] == list(TEXT) and body["ends_with_eos"] is False
    rows = body["prefix_probabilities"]
    assert len(rows) == len(TEXT) and all(len(row) == 5 for row in rows)
    assert all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in rows)
    [whole] = run.classify([TEXT])  # the reference: the last row is classify's answer for the whole text
    assert [x["label"] for x in body["labels"]] == list(whole.probabilities) and body["label"] == whole.label
    assert [x["probability"] for x in body["labels"]] == pytest.approx(
        list(whole.probabilities.values()), abs=1e-5
    )
    assert rows[-1] == pytest.approx(list(whole.probabilities.values()), abs=1e-5)
    columns = [x["label"] for x in body["labels"]]
    for t in range(len(TEXT)):  # each row is classify's answer for the prefix alone
        [prefix] = run.classify([TEXT[: t + 1]])
        assert rows[t] == pytest.approx([prefix.probabilities[x] for x in columns], abs=1e-5)
    _check_changes(body, run.prior()[run.labels.index(body["label"])])


def test_classify_with_a_conditional_model_is_bayes_rule_on_running_sums(url: str, runs: dict) -> None:
    run = runs["conditional"]
    status, body = call(url + "/api/classify", {"run": "conditional", "text": TEXT, "top_k": 5})
    assert status == 200 and body["tokens"] == [*TEXT, "<eos>"] and body["ends_with_eos"] is True
    rows = body["prefix_probabilities"]
    assert len(rows) == len(TEXT) + 1 and all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in rows)
    [whole] = run.classify([TEXT])  # the last row, after the closing <eos>, is classify's answer
    assert [x["label"] for x in body["labels"]] == list(whole.probabilities)
    assert rows[-1] == pytest.approx(list(whole.probabilities.values()), abs=1e-5)
    # the reference for one prefix, "Iva": log P("Iva" | y) = the first 3 of the scorer's per-token log-probs
    columns = [x["label"] for x in body["labels"]]
    joint = [
        sum(run.score(TEXT, label, oov="include")[0].token_logprobs[:3]) + prior
        for label, prior in zip(run.labels, log_prior(run.config.label_counts), strict=True)
    ]
    top = max(joint)
    total = sum(math.exp(v - top) for v in joint)
    expected = {label: math.exp(v - top) / total for label, v in zip(run.labels, joint, strict=True)}
    assert rows[2] == pytest.approx([expected[x] for x in columns], abs=1e-5)
    _check_changes(body, run.prior()[run.labels.index(body["label"])])


def _check_changes(body: dict, prior: float) -> None:
    """`change` is the predicted label's step in probability at each token; `highlighted` the 3 largest steps."""
    chosen = [row[0] for row in body["prefix_probabilities"]]  # the predicted label is the first column
    assert body["change"] == pytest.approx(
        [b - a for a, b in zip([prior, *chosen[:-1]], chosen, strict=True)], abs=1e-9
    )
    by_size = sorted(range(len(chosen)), key=lambda t: -abs(body["change"][t]))
    assert len(body["highlighted"]) == 3 and sorted(body["highlighted"]) == sorted(by_size[:3])


def test_top_k_chooses_the_columns_and_is_capped_at_the_labels(url: str, runs: dict) -> None:
    status, body = call(url + "/api/classify", {"run": "classifier", "text": TEXT, "top_k": 2})
    assert (
        status == 200 and len(body["labels"]) == 2 and all(len(row) == 2 for row in body["prefix_probabilities"])
    )
    status, body = call(url + "/api/classify", {"run": "classifier", "text": TEXT, "top_k": 50})
    assert status == 200 and len(body["labels"]) == 5


def test_classify_prefixes_in_the_library(runs: dict) -> None:
    found = runs["classifier"].classify_prefixes("Rossi")
    assert found.tokens == list("Rossi") and len(found.probabilities) == 5 and not found.ends_with_eos
    assert found.final().probabilities == pytest.approx(
        runs["classifier"].classify("Rossi")[0].probabilities, abs=1e-5
    )
    found = runs["conditional"].classify_prefixes("Rossi")
    assert found.tokens[-1] == "<eos>" and len(found.probabilities) == 6 and found.ends_with_eos
    assert found.final().probabilities == pytest.approx(
        runs["conditional"].classify("Rossi")[0].probabilities, abs=1e-5
    )


@pytest.mark.parametrize("name", ["classifier", "conditional"])
def test_charrnn_serve_takes_labelled_runs(runs: dict, name: str) -> None:
    with socket.socket() as busy:  # a busy port: the run is loaded, then serving stops before it starts
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(["serve", str(runs[name].run_dir), "--port", str(port)])
    assert result.code == 1 and "does not show" not in result.stderr
    assert f"charrnn: error: Cannot listen on 127.0.0.1:{port}" in result.stderr
