"""`charrnn eval` and the OOV policies: whole-file log-likelihood against direct references."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import charrnn
from charrnn.core.errors import CharRNNError
from charrnn.core.special_tokens import UNK_ID
from charrnn.lm.evaluation import evaluate_text
from charrnn.lm.truncated_bptt import StreamBatches, encode_ids, evaluate_stream
from tests.support import TINY_LM
from tests.test_cli import run_cli

TINY = {**TINY_LM, "bptt": 8, "max_steps": 12, "eval_every": 6}
REAL = "We are accounted poor citizens, the patricians good."
GIBBERISH = "Xqzv plorth ummbik sewtrk fadoom qqq zzkr."


@pytest.fixture(scope="module")
def char_run(tmp_path_factory: pytest.TempPathFactory, shakespeare_head: str) -> Path:
    root = tmp_path_factory.mktemp("eval")
    (root / "corpus.txt").write_text(shakespeare_head, encoding="utf-8")
    charrnn.train(root / "corpus.txt", out=root / "char", seed=3, **TINY)
    return root / "char"


@pytest.fixture(scope="module")
def word_run(tmp_path_factory: pytest.TempPathFactory, shakespeare_head: str) -> Path:
    root = tmp_path_factory.mktemp("word")
    (root / "corpus.txt").write_text(shakespeare_head * 3, encoding="utf-8")
    options = {**TINY, "max_steps": 40, "lr": 0.02}
    charrnn.train(root / "corpus.txt", out=root / "word", level="word", seed=3, **options)
    return root / "word"


def test_one_stream_equals_a_direct_forward_pass(char_run: Path) -> None:
    run = charrnn.load(char_run)
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    result = evaluate_text(run.model, run.tokenizer, text, level="char", batch_size=1, bptt=7)
    ids = encode_ids(run.tokenizer, text).long()
    with torch.no_grad():
        hidden, _ = run.model(ids[None, :-1])
        reference = run.model.log_probs(hidden)[0].gather(1, ids[1:, None]).sum().item()
    assert result.tokens == len(ids) - 1
    assert result.logprob == pytest.approx(reference, rel=1e-5)
    assert result.nats_per_token == pytest.approx(-reference / (len(ids) - 1), rel=1e-5)
    assert result.bits_per_char == pytest.approx(result.nats_per_token / math.log(2), rel=1e-9)
    assert result.perplexity == pytest.approx(math.exp(result.nats_per_token), rel=1e-9)


def test_batched_evaluation_equals_the_validation_loss(char_run: Path, shakespeare_head: str) -> None:
    run = charrnn.load(char_run)
    text = shakespeare_head[:3000]
    result = evaluate_text(run.model, run.tokenizer, text, level="char", batch_size=3, bptt=5)
    batches = StreamBatches.from_ids(encode_ids(run.tokenizer, text), 3, 5, full_chunk=False)
    assert result.tokens == batches.n_tokens
    assert result.nats_per_token == pytest.approx(
        evaluate_stream(run.model, batches, torch.device("cpu")), rel=1e-5
    )


def test_eval_command_prints_json_for_a_file(char_run: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "test.txt").write_text("Speak, speak.\nYou are all resolved?\n", encoding="utf-8")
    code, out, err = run_cli(
        ["eval", str(char_run), str(tmp_path / "test.txt"), "--json", "--batch-size", "1"], capsys
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["tokens"] == len("Speak, speak.\nYou are all resolved?\n") - 1
    assert data["perplexity"] == pytest.approx(math.exp(data["nats_per_token"]))
    code, out, err = run_cli(["eval", str(char_run), str(tmp_path / "missing.txt")], capsys)
    assert code == 1 and err.count("\n") == 1 and "missing.txt" in err


def test_oov_policies_follow_their_definitions(word_run: Path) -> None:
    run = charrnn.load(word_run)
    vocab = run.tokenizer.vocab_size
    include, skip, penalty = (run.score(GIBBERISH, oov=policy)[0] for policy in ("include", "skip", "penalty"))
    unk = [i for i, t in enumerate(include.token_ids) if t == UNK_ID]
    assert include.n_unk == len(unk) >= 5
    assert penalty.logprob == pytest.approx(include.logprob - len(unk) * math.log(vocab))
    kept = [lp for i, lp in enumerate(include.token_logprobs) if i not in unk]
    assert skip.logprob == pytest.approx(sum(kept)) and skip.n_tokens == len(kept) and skip.n_skipped == len(unk)
    fixed = run.score(GIBBERISH, oov="penalty", oov_logprob=-2.0)[0]
    assert fixed.logprob == pytest.approx(include.logprob - 2.0 * len(unk))
    with pytest.raises(CharRNNError, match="^oov must be"):  # the API names its keywords
        run.score(GIBBERISH, oov="ignore")


def test_default_oov_ranks_a_real_sentence_above_unknown_words(word_run: Path, capsys) -> None:
    run = charrnn.load(word_run)
    real, gibberish = run.score([REAL, GIBBERISH])
    assert real.n_unk == 0 and gibberish.n_unk >= 5
    assert real.logprob > gibberish.logprob
    code, out, err = run_cli(["score-sentence", str(word_run), REAL, GIBBERISH, "--json"], capsys)
    assert code == 0
    assert [s["logprob"] for s in json.loads(out)] == pytest.approx([real.logprob, gibberish.logprob])
    assert "1 sentence(s) contain <unk>" in err and "--oov penalty" in err


def test_eval_of_the_validation_file_reproduces_the_best_validation_loss(
    tmp_path: Path, shakespeare_head: str
) -> None:
    (tmp_path / "train.txt").write_text(shakespeare_head[:4000], encoding="utf-8")
    (tmp_path / "valid.txt").write_text(shakespeare_head[4000:5200], encoding="utf-8")
    options = {**TINY, "max_steps": 6, "eval_every": 3, "eval_tokens": None}
    result = charrnn.train(
        tmp_path / "train.txt", out=tmp_path / "run", val_corpus=tmp_path / "valid.txt", **options
    )
    evaluation = charrnn.load(tmp_path / "run").evaluate_file(tmp_path / "valid.txt")
    assert evaluation.nats_per_token == pytest.approx(result.best_val_loss, rel=1e-5)


def test_eval_says_why_it_predicts_fewer_tokens_than_the_file_has(tmp_path: Path, capsys) -> None:
    from tests.support import REPO_ROOT
    from tests.test_cli import run_cli as cli

    text = tmp_path / "t.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n")
    code, out, err = cli(
        ["eval", str(REPO_ROOT / "tests" / "data" / "old_runs" / "lm-char" / "run"), str(text)], capsys
    )
    assert code == 0, err
    words = " ".join(out.replace("│", " ").split())
    assert "78 predicted of 81 in the file: the first token of each of the 2 rows is not predicted" in words
    assert "the last token does not fill a row" in words
