"""`charrnn seq2seq train|translate|eval` end to end on a small slice of the bundled Multi30k pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from charrnn.cli import main
from charrnn.core.errors import CharRNNError
from charrnn.core.rundir import RESUME_FILE, load_tensors
from charrnn.core.version import FORMAT_VERSION
from charrnn.seq2seq.run import TranslationRun
from charrnn.seq2seq.scoring import score_pairs
from tests.support import TINY_SEQ2SEQ_FLAGS

torch.set_num_threads(1)

BUNDLED = Path(__file__).resolve().parent.parent / "corpora" / "multi30k-de-en-small.tsv"


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory) -> dict[str, Path]:
    lines = BUNDLED.read_text(encoding="utf-8").splitlines()
    root = tmp_path_factory.mktemp("pairs")
    files = {"train": root / "train.tsv", "val": root / "val.tsv"}
    files["train"].write_text("\n".join(lines[:200]) + "\n", encoding="utf-8")
    files["val"].write_text("\n".join(lines[200:230]) + "\n", encoding="utf-8")
    for name, chunk in (("train", lines[:200]), ("val", lines[200:230])):
        for side, column in (("de", 0), ("en", 1)):
            path = root / f"{name}.{side}"
            path.write_text("\n".join(line.split("\t")[column] for line in chunk) + "\n", encoding="utf-8")
            files[f"{name}.{side}"] = path
    return files


def train_command(pair_files: dict[str, Path], *more: object) -> list[str]:
    """`seq2seq train` of the tiny model on the training pairs, validated on the held-out ones."""
    args = ["seq2seq", "train", pair_files["train"], "--val", pair_files["val"], *TINY_SEQ2SEQ_FLAGS, *more]
    return [str(a) for a in args]


@pytest.fixture(scope="module")
def run_dir(pair_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "luong"
    with pytest.raises(SystemExit) as info:
        main(
            train_command(
                pair_files, "--out", out, "--max-steps", "20", "--eval-every", "10", "--attention", "luong-general"
            )
        )
    assert info.value.code in (0, None)
    return out


def test_train_writes_a_run_directory(run_dir: Path) -> None:
    for name in ("config.json", "model.safetensors", "resume.safetensors", "metrics.jsonl"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "source" / "tokenizer.json").is_file() and (run_dir / "target" / "tokenizer.json").is_file()
    config = json.loads((run_dir / "config.json").read_text())
    assert (
        config["kind"] == "seq2seq" and config["format_version"] == FORMAT_VERSION and "charrnn_version" in config
    )
    assert config["model"]["attention"] == "luong-general"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in records) and any("tokens_per_second" in r for r in records)


def test_translate_threads_default_follows_the_decoder_rows(run_dir: Path, capsys, monkeypatch, tmp_path) -> None:
    from charrnn.core import openmp
    from charrnn.core.runtime import MANY_ROWS

    monkeypatch.setattr(openmp, "default_threads", lambda cores, busy: 3)  # "the free cores", visibly not 1
    many = tmp_path / "many.de"
    many.write_text("Ein Hund rennt.\n" * MANY_ROWS, encoding="utf-8")
    try:
        for args, threads in (
            (["Ein Hund."], 1),  # one sentence, greedy: one decoder row per step
            (["Ein Hund.", "--beam", "5"], 1),  # five rows
            (["--file", many], 3),  # MANY_ROWS sentences decoded as one batch
            (["--file", many, "--threads", "2"], 2),  # asked for
        ):
            torch.set_num_threads(7)
            code, _, err = run(capsys, "seq2seq", "translate", run_dir, *args)
            assert code == 0, err
            assert torch.get_num_threads() == threads, args
        code, _, err = run(capsys, "seq2seq", "eval", run_dir, "--src", many, "--tgt", many)
        assert code == 0 and torch.get_num_threads() == 3, err
    finally:
        torch.set_num_threads(1)


def test_translate_arguments_stdin_json_and_attention(run_dir: Path, capsys, monkeypatch) -> None:
    code, out, err = run(capsys, "seq2seq", "translate", run_dir, "Ein Mann schläft.", "Zwei Hunde spielen.")
    assert code == 0 and len(out.splitlines()) == 2, err
    code, out, _ = run(capsys, "seq2seq", "translate", run_dir, "Ein Hund.", "--beam", "3", "--json")
    payload = json.loads(out)
    assert code == 0 and payload[0]["source_tokens"] == ["Ein", "Hund", ".", "<eos>"]
    code, out, _ = run(
        capsys, "seq2seq", "translate", run_dir, "Ein Hund.", "--show-attention", "--max-length", "3"
    )
    assert code == 0 and "attention" in out and "Hund" in out
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO("Ein Hund.\n\nEine Katze.\n"))
    code, out, _ = run(capsys, "seq2seq", "translate", run_dir)
    assert code == 0 and len(out.splitlines()) == 2


@pytest.mark.parametrize("command", ["translate", "eval"])
def test_translate_and_eval_take_threads_default_one(run_dir: Path, pair_files, capsys, command: str) -> None:
    import torch

    data = ["Ein Hund."] if command == "translate" else [pair_files["val"], "--limit", "1"]  # one sentence
    try:
        torch.set_num_threads(3)
        code, _, err = run(capsys, "seq2seq", command, run_dir, *data)
        assert code == 0 and torch.get_num_threads() == 1, err
        code, _, err = run(capsys, "seq2seq", command, run_dir, *data, "--threads", "2")
        assert code == 0 and torch.get_num_threads() == 2, err
    finally:
        torch.set_num_threads(1)


def test_eval_reports_bleu_exact_match_and_scorer_log_probs(run_dir: Path, pair_files, capsys) -> None:
    code, out, err = run(capsys, "seq2seq", "eval", run_dir, pair_files["val"], "--json", "--per-sentence")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["pairs"] == 30 and 0.0 <= payload["bleu"] <= 100.0 and 0.0 <= payload["exact_match"] <= 1.0
    assert "tok:13a" in payload["bleu_signature"]
    loaded = TranslationRun.load(run_dir)
    source_tokenizer, target_tokenizer, model = loaded.source_tokenizer, loaded.target_tokenizer, loaded.model
    first = payload["sentences"][:3]
    scores = score_pairs(
        model, source_tokenizer, target_tokenizer, [s["source"] for s in first], [s["reference"] for s in first]
    )
    assert [s["logprob"] for s in first] == pytest.approx([s.logprob for s in scores], abs=1e-4)
    padded = score_pairs(
        model, source_tokenizer, target_tokenizer, [f"  {first[0]['source']} "], [first[0]["reference"]]
    )
    # stripped like translate does; 1e-4: float32 noise between a one- and a three-pair batch (~1e-6 on -75)
    assert padded[0].logprob == pytest.approx(scores[0].logprob, abs=1e-4)
    with pytest.raises(CharRNNError, match="empty source"):
        score_pairs(model, source_tokenizer, target_tokenizer, ["  "], ["A dog."])
    code, out, _ = run(
        capsys,
        "seq2seq",
        "eval",
        run_dir,
        "--src",
        pair_files["val.de"],
        "--tgt",
        pair_files["val.en"],
        "--beam",
        "2",
        "--limit",
        "5",
    )
    assert code == 0 and "BLEU" in out and "beam 2" in out


def test_resume_continues_exactly(pair_files, tmp_path: Path, capsys) -> None:
    common = train_command(pair_files, "--attention", "bahdanau")
    common += ["--eval-every", "6", "--save-every", "6", "--cell", "lstm", "--dropout", "0.3"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run(capsys, *common, "--out", straight, "--max-steps", "12")[0] == 0
    assert run(capsys, *common, "--out", split, "--max-steps", "6")[0] == 0
    code, _, err = run(capsys, "seq2seq", "train", "--resume", split, "--max-steps", "12", "--threads", "1")
    assert code == 0, err
    a, _ = load_tensors(straight / RESUME_FILE)
    b, meta = load_tensors(split / RESUME_FILE)
    assert meta["train_state"]["step"] == 12
    for name in a:
        if name.startswith("model."):
            assert torch.equal(a[name], b[name]), name


def test_parallel_files_and_per_side_levels(pair_files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "par"
    code, _, err = run(
        capsys,
        "seq2seq", "train", "--src", pair_files["train.de"], "--tgt", pair_files["train.en"],
        "--val-src", pair_files["val.de"], "--val-tgt", pair_files["val.en"],
        "--source-level", "char", "--target-level", "word", "--attention", "none", "--context", "input",
        "--out", out, "--max-steps", "3", *TINY_SEQ2SEQ_FLAGS,
    )  # fmt: skip
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["source_tokenizer"]["level"] == "char" and config["target_tokenizer"]["level"] == "word"
    code, _, err = run(capsys, "seq2seq", "translate", out, "Hallo", "--show-attention")
    assert code == 1 and "no attention to show" in err


def test_default_run_uses_the_bundled_slice(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "seq2seq", "train", "--out", "run", "--max-steps", "1", *TINY_SEQ2SEQ_FLAGS)
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["pairs"].endswith("multi30k-de-en-small.tsv")
    assert config["val_pairs"].endswith("multi30k-de-en-small-val.tsv")


def test_bad_input_is_one_line_with_line_numbers(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("Hund\tdog\nKatze cat\nMaus\tmouse\textra\n", encoding="utf-8")
    code, out, err = run(capsys, "seq2seq", "train", bad, "--out", tmp_path / "r", *TINY_SEQ2SEQ_FLAGS)
    assert code == 1 and err.count("\n") == 1 and "line 2, 3" in err and "--skip-malformed" in err

    empty = tmp_path / "empty_sides.tsv"
    empty.write_text(
        "".join(f"Wort {i}\tword {i}\n" for i in range(30)) + "\tno source\nno target\t\n", encoding="utf-8"
    )
    code, _, err = run(
        capsys, "seq2seq", "train", empty, "--out", tmp_path / "e", "--max-steps", "1", *TINY_SEQ2SEQ_FLAGS
    )
    assert code == 0 and "skipped 2 pair(s) with an empty source or target" in err

    code, _, err = run(capsys, "seq2seq", "translate", tmp_path / "nowhere", "x")
    assert code == 1 and "does not exist" in err
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps({"kind": "lm", "format_version": 1}))
    code, _, err = run(capsys, "seq2seq", "eval", lm, bad)
    assert code == 1 and "not a seq2seq model" in err
    code, _, err = run(capsys, "seq2seq", "train", bad, "--attention", "luong", "--out", tmp_path / "x")
    assert code == 1 and "Unknown attention 'luong'" in err


def test_language_model_commands_refuse_a_seq2seq_run(run_dir: Path, capsys) -> None:
    code, _, err = run(capsys, "sample", run_dir, "--length", "5")
    assert code == 1 and err.count("\n") == 1 and "holds a seq2seq run" in err


def test_a_swapped_tokenizer_is_caught(run_dir: Path, tmp_path: Path, capsys) -> None:
    import shutil

    from charrnn.core.errors import CharRNNError

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    path = copy / "target" / "tokenizer.json"
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload["units"][3], payload["units"][4] = payload["units"][4], payload["units"][3]
    path.write_text(json.dumps(payload), encoding="utf-8")
    with pytest.raises(CharRNNError, match="not the ones"):
        TranslationRun.load(copy)
    code, _, err = run(capsys, "seq2seq", "train", "--resume", copy, "--max-steps", "50")
    assert code == 1 and "not the ones" in err and err.count("\n") == 1


def test_subword_sides(pair_files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sub"
    args = ["seq2seq", "train", pair_files["train"], "--level", "subword", "--vocab-size", "150", "--out", out]
    code, _, err = run(capsys, *args, "--max-steps", "2", *TINY_SEQ2SEQ_FLAGS)
    assert code == 0, err
    assert (out / "source" / "tokenizer.model").is_file() and (out / "target" / "tokenizer.model").is_file()
    code, out_text, err = run(capsys, "seq2seq", "translate", out, "Ein Hund.", "--max-length", "4")
    assert code == 0, err


def test_precision_option_is_checked_and_saved(pair_files, tmp_path: Path, capsys) -> None:
    code, _, err = run(
        capsys, "seq2seq", "train", pair_files["train"], "--precision", "fp64", "--out", tmp_path / "x"
    )
    assert code == 1 and err.count("\n") == 1 and "Unknown precision 'fp64'" in err
    out = tmp_path / "bf16"
    code, _, err = run(
        capsys,
        "seq2seq",
        "train",
        pair_files["train"],
        "--precision",
        "bf16",
        "--out",
        out,
        "--max-steps",
        "2",
        *TINY_SEQ2SEQ_FLAGS,
    )
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["training"]["precision"] == "bf16"


def test_eval_scores_in_fp32_unless_bf16_is_asked_for(run_dir: Path, pair_files, capsys) -> None:
    figures = {}
    for precision in ("fp32", "bf16"):
        code, out, err = run(
            capsys, "seq2seq", "eval", run_dir, pair_files["val"], "--json", "--precision", precision
        )
        assert code == 0, err
        figures[precision] = json.loads(out)["mean_logprob"]
    code, out, _ = run(capsys, "seq2seq", "eval", run_dir, pair_files["val"], "--json")
    assert json.loads(out)["mean_logprob"] == figures["fp32"]  # the default is fp32
    assert figures["bf16"] != figures["fp32"] and figures["bf16"] == pytest.approx(figures["fp32"], rel=0.05)


def test_overwrite_is_a_transaction_for_seq2seq_runs_too(pair_files, tmp_path: Path, capsys) -> None:
    out = tmp_path / "s2s"
    common = train_command(pair_files, "--out", out)
    assert run(capsys, *common, "--max-steps", "2", "--eval-every", "2")[0] == 0
    before = {
        str(p.relative_to(out)): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.name != ".charrnn.lock"
    }
    code, _, err = run(capsys, *common, "--overwrite", "--max-steps", "2", "--source-level", "subword")
    assert code == 1 and "vocab-size" in err and "internal error" not in err  # subword without a size
    after = {
        str(p.relative_to(out)): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.name != ".charrnn.lock"
    }
    assert after == before and "source/tokenizer.json" in after
    code, _, err = run(capsys, *common, "--overwrite", "--max-steps", "2", "--eval-every", "2", "--hidden", "16")
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["model"]["hidden"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s2s"]  # no staging or old run left beside it
    assert run(capsys, "seq2seq", "translate", out, "Hallo")[0] == 0


def test_eval_table_title_does_not_wrap_at_80_columns(run_dir: Path, pair_files, capsys, monkeypatch) -> None:
    from charrnn.cli.display import PlainConsole

    terminal = PlainConsole(width=80, force_terminal=False)
    monkeypatch.setattr("charrnn.cli.seq2seq.out_console", lambda: terminal)
    with terminal.capture() as captured:
        code, _, err = run(capsys, "seq2seq", "eval", run_dir, pair_files["val"], "--limit", "3")
    assert code == 0, err
    lines = captured.get().splitlines()
    assert lines[0].strip() == "seq2seq evaluation" and str(run_dir) in " ".join(lines)
    assert max(len(line) for line in lines if "signature" not in line) <= 80
