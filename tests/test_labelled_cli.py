"""Labelled text from the command line: train --task classify / --condition label, classify, eval, sample --label,
score-sentence --label, info; and the one-line errors of commands given the wrong kind of run or option."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from charrnn.core import rundir
from charrnn.labelled.metrics import report
from tests.support import cli_flags, run_cli

NAMES = Path(__file__).resolve().parent / "data" / "names"
FLAGS = cli_flags({"embed": 8, "hidden": 12, "batch-size": 8, "threads": 1, "device": "cpu", "eval-every": 5})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A classifier, a conditional model and a plain language model, each trained for a few steps by the CLI."""
    root = tmp_path_factory.mktemp("labelled-cli")
    made = {}
    for name, choice in (
        ("classifier", ["--task", "classify"]),
        ("conditional", ["--condition", "label"]),
        ("lm", []),
    ):
        extra = ["--bptt", "8"] if name == "lm" else []
        result = run_cli(
            ["train", str(NAMES), *choice, "--out", str(root / name), "--max-steps", "6", *FLAGS, *extra]
        )
        assert result.code == 0, result.stderr
        made[name] = root / name
    return made


def test_train_picks_the_kind_the_task_asks_for(runs: dict[str, Path]) -> None:
    kinds = {name: json.loads((path / rundir.CONFIG_FILE).read_text())["kind"] for name, path in runs.items()}
    assert kinds == {"classifier": "classifier", "conditional": "conditional", "lm": "lm"}
    result = run_cli(["train", str(NAMES), "--task", "classify", "--print-config"])
    assert result.code == 0 and 'pooling = "concat"' in result.stdout and "bptt" not in result.stdout
    result = run_cli(["train", str(NAMES), "--condition", "label", "--print-config", "--label-as", "input"])
    assert result.code == 0 and 'label_as = "input"' in result.stdout and "batch_size = 32" in result.stdout


def test_training_shows_the_labels_with_their_counts(tmp_path: Path) -> None:
    result = run_cli(
        ["train", str(NAMES), "--task", "classify", "--out", str(tmp_path / "r"), "--max-steps", "1", *FLAGS]
    )
    assert result.code == 0
    assert "5 labels: Russian 36, English 27, Italian 18, Japanese 18, Scottish 5" in result.stderr
    assert "Classify with: charrnn classify" in result.stderr


def test_without_data_both_labelled_kinds_train_on_the_bundled_names(tmp_path: Path) -> None:
    bundled = Path(__file__).resolve().parent.parent / "corpora"
    test_rows = len((bundled / "names-test.tsv").read_text(encoding="utf-8").splitlines()) - 1  # less the header
    for choice in (["--task", "classify"], ["--condition", "label"]):
        out = tmp_path / choice[-1]
        result = run_cli(["train", *choice, "--out", str(out), "--max-steps", "1", *FLAGS])
        assert result.code == 0, result.stderr
        assert "18 labels: Russian" in result.stderr
        config = json.loads((out / rundir.CONFIG_FILE).read_text())
        assert Path(config["corpus"]) == (bundled / "names.tsv").resolve() and len(config["labels"]) == 18
        result = run_cli(["eval", str(out), str(bundled / "names-test.tsv"), "--json"])
        assert result.code == 0, result.stderr
        figures = json.loads(result.stdout)
        assert (
            figures["examples"] == test_rows and sum(row["support"] for row in figures["per_label"]) == test_rows
        )


def test_classify_texts_file_and_stdin(runs: dict[str, Path], tmp_path: Path) -> None:
    for kind in ("classifier", "conditional"):
        result = run_cli(["classify", str(runs[kind]), "Ivanov", "Rossi", "--json", "--top-k", "2"])
        assert result.code == 0, result.stderr
        rows = json.loads(result.stdout)
        assert [r["text"] for r in rows] == ["Ivanov", "Rossi"] and all(len(r["labels"]) == 2 for r in rows)
        assert rows[0]["labels"][0]["probability"] >= rows[0]["labels"][1]["probability"]
    texts = tmp_path / "texts.txt"
    texts.write_text("Ivanov\n\nTanaka\n", encoding="utf-8")
    result = run_cli(["classify", str(runs["classifier"]), "--file", str(texts)])
    assert result.code == 0 and "Ivanov" in result.stdout and "Tanaka" in result.stdout and "#3" in result.stdout
    result = run_cli(["classify", str(runs["classifier"]), "--json"], stdin="Smith\nRossi\n")
    assert [r["text"] for r in json.loads(result.stdout)] == ["Smith", "Rossi"]


def test_eval_reports_what_the_predictions_give(runs: dict[str, Path], tmp_path: Path) -> None:
    import charrnn

    result = run_cli(["eval", str(runs["classifier"]), str(NAMES), "--json"])
    assert result.code == 0, result.stderr
    figures = json.loads(result.stdout)
    run = charrnn.load(runs["classifier"])
    data = run.read_data(NAMES)
    predicted = [run.labels.index(c.label) for c in run.classify(data.texts)]
    expected = report([run.labels.index(y) for y in data.labels], predicted, run.labels)
    assert figures["confusion"] == expected.confusion and figures["accuracy"] == pytest.approx(expected.accuracy)
    assert sum(map(sum, figures["confusion"])) == figures["examples"] == 116
    table = run_cli(["eval", str(runs["classifier"]), str(NAMES)])
    assert table.code == 0 and "macro-F1" in table.stdout and "confusion matrix" in table.stdout
    conditional = run_cli(["eval", str(runs["conditional"]), str(NAMES), "--json"])
    assert conditional.code == 0 and json.loads(conditional.stdout)["extra"]["nats_per_token"] > 0
    pytest.importorskip("matplotlib")
    plotted = run_cli(["eval", str(runs["classifier"]), str(NAMES), "--plot", str(tmp_path / "cm.png")])
    assert plotted.code == 0 and (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_reads_tsv_with_the_fields_named(runs: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "test.tsv"
    data.write_text("who\tname\nRussian\tIvanov\nItalian\tRossi\nRussian\tPetrov\n", encoding="utf-8")
    result = run_cli(
        ["eval", str(runs["classifier"]), str(data), "--label-field", "who", "--text-field", "name", "--json"]
    )
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["examples"] == 3
    unknown = tmp_path / "unknown.tsv"
    unknown.write_text("label\ttext\nKlingon\tWorf\n", encoding="utf-8")
    result = run_cli(["eval", str(runs["classifier"]), str(unknown)])
    assert result.code == 1 and "label 'Klingon'" in result.stderr and "its labels are: English" in result.stderr


def test_sample_and_score_with_a_label(runs: dict[str, Path]) -> None:
    run = str(runs["conditional"])
    result = run_cli(["sample", run, "--label", "Russian", "--num", "3", "--seed", "1", "--length", "20"])
    assert result.code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    drawn = run_cli(["sample", run, "--num", "4", "--seed", "1", "--length", "20"])
    lines = drawn.stdout.splitlines()
    assert len(lines) == 4 and all(
        line.split("\t")[0] in {"English", "Italian", "Japanese", "Russian", "Scottish"} for line in lines
    )
    unknown = run_cli(["sample", run, "--label", "Klingon"])
    assert (
        unknown.code == 1 and unknown.stderr.count("\n") == 1 and "labels are: English, Italian" in unknown.stderr
    )
    scored = run_cli(["score-sentence", run, "Ivanov", "--label", "Russian", "--json"])
    assert scored.code == 0 and json.loads(scored.stdout)[0]["n_tokens"] == 7
    missing = run_cli(["score-sentence", run, "Ivanov"])
    assert missing.code == 1 and "give --label" in missing.stderr


def test_info_shows_the_labels(runs: dict[str, Path]) -> None:
    result = run_cli(["info", str(runs["classifier"])])
    assert result.code == 0 and "5 labels: Russian 36" in result.stdout
    assert "nats/text" in result.stdout and "bits/char" not in result.stdout  # the loss is per text, not per char
    facts = json.loads(run_cli(["info", str(runs["conditional"]), "--json"]).stdout)
    assert facts["kind"] == "conditional" and facts["labels"]["Scottish"] == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["sample", "{classifier}"],
            "`charrnn sample` works on language model and conditional language model runs",
        ),
        (["score-sentence", "{classifier}", "x"], "holds a classifier run"),
        (
            ["classify", "{lm}", "Ivanov"],
            "`charrnn classify` works on classifier and conditional language model runs",
        ),
        (["sample", "{lm}", "--label", "Russian"], "--label needs a run trained with --condition label"),
        (
            ["score-sentence", "{lm}", "x", "--label", "Russian"],
            "--label needs a run trained with --condition label",
        ),
        (["eval", "{classifier}", "{names}", "--bptt", "4"], "--bptt does not apply to a labelled run"),
        (["eval", "{lm}", "{names}/Russian.txt", "--plot", "x.png"], "--plot does not apply to a language model"),
        (["classify", "{classifier}", "x", "--top-k", "0"], "--top-k must be at least 1"),
        (["sample", "{conditional}", "--interactive"], "--interactive is for language models"),
        (["train", "{names}", "--task", "classify", "--bptt", "8"], "--bptt is an option of a language model"),
        (["train", "{names}", "--pooling", "last"], "--pooling is an option of a classifier"),
        (["train", "{names}", "--task", "classify", "--condition", "label"], "takes no --condition label"),
        (["train", "{names}", "--task", "translate"], "Unknown --task 'translate'"),
        (["train", "{names}", "{names}", "--task", "classify"], "labelled data is one folder or file"),
        (
            ["train", "--resume", "{classifier}", "--condition", "label"],
            "holds a classifier run, not a conditional",
        ),
    ],
)
def test_one_line_errors(runs: dict[str, Path], args: list[str], message: str) -> None:
    paths = {**{k: str(v) for k, v in runs.items()}, "names": str(NAMES)}
    result = run_cli([a.format(**paths) for a in args])
    assert result.code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_resume_from_the_command_line(runs: dict[str, Path], tmp_path: Path) -> None:
    from tests.support import copy_run

    run = copy_run(runs["classifier"], tmp_path / "copy")
    result = run_cli(["train", "--resume", str(run), "--max-steps", "8", "--quiet"])
    assert result.code == 0, result.stderr
    assert json.loads(run_cli(["info", str(run), "--json"]).stdout)["steps"] == 8
