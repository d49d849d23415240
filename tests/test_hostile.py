"""Hostile files, strings and values (issue 21): user strings are text, never markup; bad values are one line.

Each test is named for what it shows; docs/reliability.md's misuse table lists them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn.core import rundir
from tests.support import SHAKESPEARE, TINY_FLAGS, copy_run, run_cli, snapshot, subprocess_env, write_corpus


def one_line(result, *fragments: str) -> str:
    """The error line of a CLI result that failed as a user error should: exit 1, one `charrnn: error:` line."""
    lines = result.stderr.strip().splitlines()
    assert result.code == 1, result
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    assert lines[-1].startswith("charrnn: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def cli_bytes(args: list[bytes | str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m charrnn.cli ARGS` in a subprocess with real pipes (arguments may be undecodable bytes).

    Its streams are strict UTF-8, as on a UTF-8 terminal (under the C locale Python would pass the
    undecodable bytes back out with surrogateescape).
    """
    env = {**subprocess_env(), "PYTHONIOENCODING": "utf-8:strict"}
    return subprocess.run(
        [sys.executable, "-m", "charrnn.cli", *args], cwd=cwd, env=env, capture_output=True, timeout=timeout
    )


LIMITED = """
import resource, sys
fsize, address_space = int(sys.argv[1]), int(sys.argv[2])
if fsize:
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))  # a bigger write fails with EFBIG
if address_space:
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))  # a bigger allocation fails
from charrnn.cli import main
main(sys.argv[3:])
"""


def cli_limited(args: list[str], cwd: Path, fsize: int = 0, address_space: int = 0, timeout: float = 120, **kw):
    """`charrnn ARGS` in a subprocess under RLIMIT_FSIZE and/or RLIMIT_AS (0: no limit); text output."""
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kw}
    return subprocess.run(
        [sys.executable, "-c", LIMITED, str(fsize), str(address_space), *args],
        cwd=cwd, env=subprocess_env(), text=True, timeout=timeout, **streams,
    )  # fmt: skip


# --- strings from users are text, never markup (items 9, 10) ---------------------------------------------------


def test_markup_in_paths_run_names_and_sentences_is_shown_as_typed(trained_run: Path, tmp_path: Path) -> None:
    """Item 9: `[/i]`, `[red]`, `[link=...]` in paths, run names and sentences are text, not rich markup."""
    folder = tmp_path / "w[" / "i]"  # the path 'w[/i]': a closing tag without an opening one
    folder.mkdir(parents=True)
    corpus = write_corpus(folder, chars=1500, name="c.txt")
    trained = run_cli(["train", str(corpus), "--out", str(folder / "run"), "--max-steps", "2", *TINY_FLAGS])
    assert trained.code == 0, trained.stderr
    assert (folder / "run" / rundir.WEIGHTS_FILE).is_file() or (folder / "run" / rundir.RESUME_FILE).is_file()
    assert f"charrnn sample {folder / 'run'}" in trained.stderr

    scored = run_cli(["score-sentence", str(trained_run), "[red]hi[/red] there"])
    assert scored.code == 0 and "[red]hi[/red] there" in scored.stdout, scored

    runs_dir = tmp_path / "runs"
    for name in ("[red]R", "[link=file:x]y[/link", "w["):
        copy_run(trained_run, runs_dir / name)
    shutil.move(runs_dir / "w[", folder / "w-run")  # and a run under the 'w[/i]' path
    listed = run_cli(["runs", str(runs_dir)])
    assert listed.code == 0, listed
    assert "[red]R" in listed.stdout and "[link=file:x]y[/link" in listed.stdout
    info = run_cli(["info", str(folder / "w-run")])
    assert info.code == 0 and "w[/i]" in info.stdout.replace(os.sep, "/"), info
    evaluated = run_cli(["eval", str(folder / "w-run"), str(corpus)])
    assert evaluated.code == 0 and "w[/i]/c.txt" in evaluated.stderr.replace(os.sep, "/"), evaluated
    plotted = run_cli(["plot", str(folder / "w-run"), "-o", str(folder / "p.png")])
    assert plotted.code == 0 and "p.png" in plotted.stderr, plotted


def test_control_characters_in_paths_are_shown_never_sent_to_the_terminal(
    trained_run: Path, tmp_path: Path
) -> None:
    """Item 9: ESC, BEL and OSC sequences in file names reach the terminal as escapes (`\\x1b`), never raw."""
    title = "R\x1b]0;TITLE\x07"
    copy_run(trained_run, tmp_path / "runs" / title)
    listed = run_cli(["runs", str(tmp_path / "runs")])
    assert listed.code == 0 and "R\\x1b]0;TITLE\\x07" in listed.stdout, listed
    assert "\x1b]" not in listed.stdout and "\x07" not in listed.stdout
    missing = run_cli(["info", str(tmp_path / "nope\x1b[31m\nline")])
    line = one_line(missing, "nope\\x1b[31m\\x0aline")
    assert "\x1b" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1, line


def test_lone_surrogates_never_crash_sample_info_or_score(run: Path, trained_run: Path, tmp_path: Path) -> None:
    """Item 10: '\\ud800' in a tokenizer is a damaged file; in config.json or a sentence it is printed escaped."""
    tokenizer = json.loads((run / "tokenizer.json").read_text())
    tokenizer["units"][-1] = "\ud800"
    (run / "tokenizer.json").write_text(json.dumps(tokenizer))
    one_line(run_cli(["sample", str(run), "-n", "5"]), "tokenizer.json is damaged", "lone surrogate")

    odd = copy_run(trained_run, tmp_path / "odd")
    config = json.loads((odd / "config.json").read_text())
    config["corpus"] = "\ud800x.txt"
    (odd / "config.json").write_text(json.dumps(config))
    info = cli_bytes(["info", str(odd)], tmp_path)
    assert info.returncode == 0 and b"\\ud800x.txt" in info.stdout, info.stderr.decode()
    scored = cli_bytes(["score-sentence", str(trained_run), b"caf\xff hello", "--per-token"], tmp_path)
    assert scored.returncode == 0, scored.stderr.decode()
    assert b"\\udcff" in scored.stdout
    as_json = cli_bytes(["score-sentence", str(trained_run), b"a\xffb", "--json"], tmp_path)
    assert as_json.returncode == 0 and json.loads(as_json.stdout)[0]["sentence"] == "a\udcffb", as_json.stderr


# --- values (items 11, 12, 13) -----------------------------------------------------------------------------------


def test_seeds_out_of_range_tiny_temperatures_and_huge_weights(
    run: Path, trained_run: Path, tmp_path: Path
) -> None:
    """Item 11: a seed outside 0..2**63-1 is one line; temperature 1e-300 and top-p 5e-324 sample (as greedy
    nearly does); finite weights of 3e38 that overflow to NaN are one line in sample, score-sentence and eval."""
    for seed in ("1180591620717411303424", "-1"):
        one_line(run_cli(["sample", str(trained_run), "-n", "5", "--seed", seed]), "--seed must be between 0")
    looped = run_cli(["sample", str(trained_run), "-i", "-n", "5"], stdin=":seed 1180591620717411303424\nTo\n")
    assert looped.code == 0 and ":seed must be between 0" in looped.stderr and "internal" not in looped.stderr
    for flags in (["--temperature", "1e-300"], ["--top-p", "5e-324"], ["-t", "5e-324", "--top-p", "5e-324"]):
        drawn = run_cli(["sample", str(trained_run), "-n", "5", "--seed", "1", *flags])
        assert drawn.code == 0 and len(drawn.stdout.strip()) > 0, drawn

    import torch

    tensors, metadata = rundir.load_tensors(run / rundir.WEIGHTS_FILE)
    huge = {k: torch.full_like(v, 3e38) if v.is_floating_point() else v for k, v in tensors.items()}
    rundir.save_tensors(run / rundir.WEIGHTS_FILE, huge, metadata)
    corpus = write_corpus(tmp_path, chars=300)
    for args in (
        ["sample", str(run), "-n", "5"],
        ["score-sentence", str(run), "hello"],
        ["eval", str(run), str(corpus)],
    ):
        one_line(run_cli(args), "output is not finite")


def test_config_encodings_globs_deep_arrays_and_empty_corpus_paths_are_one_line(tmp_path: Path) -> None:
    """Item 12: only text encodings; a glob stays inside the corpus folder; deep TOML nesting and an empty
    corpus path (which would name every .txt under the current folder) are refused in one line."""
    folder = tmp_path / "books"
    folder.mkdir()
    write_corpus(folder, chars=1500)
    (tmp_path / "secret.txt").write_text("outside the corpus folder\n" * 50)
    train = ["train", "--out", str(tmp_path / "r"), "--max-steps", "1", *TINY_FLAGS]
    for encoding in ("rot13", "uu_codec", "base64", "zlib"):
        one_line(run_cli([*train, str(folder), "--encoding", encoding]), f"--encoding {encoding!r} is a transform")
    for glob in ("/etc/passwd", "../*.txt", "../../../../etc/*", "sub/../../*.txt"):
        one_line(run_cli([*train, str(folder), "--glob", glob]), "reaches outside the corpus folder")
    toml = tmp_path / "deep.toml"
    toml.write_text("[model]\nhidden = " + "[" * 50_000 + "]" * 50_000 + "\n")
    one_line(run_cli([*train, str(folder), "--config", str(toml)]), "nested too deeply")
    (tmp_path / "empty.toml").write_text('corpus = ""\n')
    one_line(run_cli([*train, "--config", str(tmp_path / "empty.toml")]), "corpus is an empty path")
    one_line(run_cli([*train, ""]), "An empty corpus path")
    one_line(run_cli(["prepare", ""]), "An empty corpus path")
    assert not (tmp_path / "r").exists() and not list(tmp_path.rglob(".charrnn-cache"))


@pytest.mark.parametrize(
    ("forge", "fragment"),
    [
        (lambda t, s: s.update(lr_scale="x"), "lr_scale is 'x'"),
        (lambda t, s: s.update(best_val_loss="abc"), "best_val_loss is 'abc'"),
        (lambda t, s: s.update(step=-100), "step is -100"),
        (lambda t, s: s.update(lr_scale=float("nan")), "lr_scale is nan"),
        (lambda t, s: t.pop("task.hidden.1"), "the model needs ['hidden.0', 'hidden.1']"),
        (lambda t, s: t.update({"task.hidden.0": t["task.hidden.0"][:1]}), "does not fit the model"),
    ],
    ids=[
        "lr_scale-string",
        "best_val_loss-string",
        "negative-step",
        "nan-lr_scale",
        "missing-hidden",
        "bad-hidden",
    ],
)
def test_a_forged_training_state_in_the_resume_file_is_one_line(run: Path, forge, fragment: str) -> None:
    """Item 13: types and ranges of the saved counters, and the carried hidden state, are checked on resume;
    `info` and `runs` still describe the run."""
    tensors, metadata = rundir.load_tensors(run / rundir.RESUME_FILE)
    forge(tensors, metadata["train_state"])
    rundir.save_tensors(run / rundir.RESUME_FILE, tensors, metadata)
    before = (run / rundir.RESUME_FILE).read_bytes()
    one_line(run_cli(["train", "--resume", str(run), "--max-steps", "8"]), "is incomplete or damaged", fragment)
    assert (run / rundir.RESUME_FILE).read_bytes() == before
    assert run_cli(["info", str(run)]).code == 0
    listed = run_cli(["runs", str(run.parent)])
    assert listed.code == 0 and "run" in listed.stdout, listed


# --- writes (item 14) --------------------------------------------------------------------------------------------


def test_export_and_plot_write_atomically_and_never_through_a_link(trained_run: Path, tmp_path: Path) -> None:
    """Item 14: a write cut short by a file-size limit leaves the previous export and plot whole (and the
    export's files matching); a symbolic link at a target is replaced, its target untouched."""
    pytest.importorskip("onnx")
    pytest.importorskip("matplotlib")
    out = tmp_path / "m.onnx"
    assert run_cli(["export", str(trained_run), "-o", str(out), "-q"]).code == 0
    assert run_cli(["plot", str(trained_run), "-o", str(tmp_path / "p.png")]).code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    limit = min(len(before["m.onnx"]), len(before["p.png"])) // 2
    for args in (
        ["export", str(trained_run), "-o", str(out)],
        ["plot", str(trained_run), "-o", str(tmp_path / "p.png")],
    ):
        result = cli_limited(args, tmp_path, fsize=limit)
        assert result.returncode == 1 and "internal error" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("charrnn: error: Could not write")
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # no temporaries
    for name, command in (("m.onnx", "export"), ("p.png", "plot")):
        target = tmp_path / f"elsewhere-{name}"
        target.write_bytes(b"the user's own file")
        (tmp_path / name).unlink()
        (tmp_path / name).symlink_to(target)
        args = [command, str(trained_run), "-o", str(tmp_path / name)]
        assert run_cli(args).code == 0
        assert target.read_bytes() == b"the user's own file" and not (tmp_path / name).is_symlink()
        assert (tmp_path / name).read_bytes() == before[name] or command == "plot"


# --- caches are data, not trust (items 7, 8) ---------------------------------------------------------------------


def _user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The token cache root of this test's own user cache folder ($CHARRNN_CACHE, for subprocesses too)."""
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache" / "tokens"


def _cache(root: Path, kind: str) -> Path:
    [found] = root.glob(f"{kind}-*")
    return found


def test_a_damaged_token_cache_is_rebuilt_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 7: a truncated or out-of-range tokens.bin, a damaged header.json, a FIFO or /dev/zero link or a
    tampered file in the vocabulary cache: validated like a run file, rebuilt with a note, never trusted."""
    import numpy as np

    root = _user_cache(tmp_path, monkeypatch)
    folder = tmp_path / "books"
    folder.mkdir()
    corpus = write_corpus(folder, chars=2000)
    assert run_cli(["prepare", str(corpus)]).code == 0
    reference = np.fromfile(_cache(root, "tokens") / "tokens.bin", dtype=np.uint8).tolist()

    def header(path: Path, **changes) -> None:
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, **changes}))

    damages = {
        "truncated tokens.bin": lambda t, v: os.truncate(t / "tokens.bin", 100),
        "ids out of range": lambda t, v: (t / "tokens.bin").write_bytes(b"\xff" * len(reference)),
        "header not JSON": lambda t, v: (t / "header.json").write_text("{"),
        "header a list": lambda t, v: (t / "header.json").write_text("[1]"),
        "negative count": lambda t, v: header(t / "header.json", tokens=-5),
        "object dtype": lambda t, v: header(t / "header.json", dtype="|O"),
        "tokens.bin a directory": lambda t, v: ((t / "tokens.bin").unlink(), (t / "tokens.bin").mkdir()),
        "vocabulary FIFO": lambda t, v: ((v / "tokenizer.json").unlink(), os.mkfifo(v / "tokenizer.json")),
        "vocabulary /dev/zero": lambda t, v: ((v / "tokenizer.json").unlink(), (v / "tokenizer.json").symlink_to("/dev/zero")),
        "tampered vocabulary": lambda t, v: header(v / "tokenizer.json", units=["<pad>", "<unk>", "<eos>", "a", "b"]),
        "truncated vocabulary": lambda t, v: os.truncate(v / "tokenizer.json", 20),
    }  # fmt: skip
    for name, damage in damages.items():
        damage(_cache(root, "tokens"), _cache(root, "vocab"))
        if "FIFO" in name:  # in a process of its own, which a FIFO read would block
            result = cli_limited(["prepare", str(corpus)], tmp_path, timeout=60)
            result = type("Result", (), {"code": result.returncode, "stderr": result.stderr})
        else:
            result = run_cli(["prepare", str(corpus)])
        assert result.code == 0, (name, result.stderr)
        assert "is rebuilt" in result.stderr and str(root) in result.stderr, (
            name,
            result.stderr,
        )
        assert np.fromfile(_cache(root, "tokens") / "tokens.bin", dtype=np.uint8).tolist() == reference, name
        assert [p.name for p in root.glob("*/*") if p.name.endswith(".tmp")] == [], name
    os.truncate(_cache(root, "tokens") / "tokens.bin", 100)
    trained = run_cli(["train", str(corpus), "--out", str(tmp_path / "r"), "--max-steps", "2", *TINY_FLAGS])
    assert trained.code == 0 and "is rebuilt" in trained.stderr, trained.stderr


def test_a_stale_cache_is_rebuilt_when_the_middle_of_a_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 8: bytes in the middle of a 3 MB corpus change with its size and mtime put back (`touch -r`): the
    file's ctime is later than the cache, so the cache re-hashes the whole file and is rebuilt; `prepare
    --verify` re-hashes whatever the ctime."""
    from tests.support import tiny_text

    root = _user_cache(tmp_path, monkeypatch)
    folder = tmp_path / "big"
    folder.mkdir()
    corpus = folder / "c.txt"
    corpus.write_text(tiny_text(30_000) * 100)  # 3 MB: the key hashes only the first and last MB
    assert run_cli(["prepare", str(corpus)]).code == 0

    def change_the_middle(new: bytes) -> None:
        times = corpus.stat()
        raw = bytearray(corpus.read_bytes())
        raw[len(raw) // 2 : len(raw) // 2 + len(new)] = new
        corpus.write_bytes(bytes(raw))
        os.utime(corpus, ns=(times.st_atime_ns, times.st_mtime_ns))  # as `touch -r` does

    change_the_middle(b"ZZZZZ")  # a unit the vocabulary never saw: the vocabulary cache is stale
    stale = run_cli(["prepare", str(corpus)])
    assert stale.code == 0 and "changed since it was made" in stale.stderr, stale.stderr
    assert "already cached" not in stale.stdout
    assert "already cached" in run_cli(["prepare", str(corpus)]).stdout  # and then reused

    for cache in root.glob("*/header.json"):  # as if made after any later change
        data = json.loads(cache.read_text())
        cache.write_text(json.dumps({**data, "built_ns": 2**62}))
    change_the_middle(b"eeeee")
    assert "already cached" in run_cli(["prepare", str(corpus)]).stdout  # the ctime says nothing changed
    verified = run_cli(["prepare", str(corpus), "--verify"])
    assert verified.code == 0 and "changed since it was made" in verified.stderr, verified.stderr


# --- memory, disk and time (items 1-6) ---------------------------------------------------------------------------


def test_a_weights_header_naming_a_tensor_the_model_lacks_is_refused_before_its_data_is_read(
    run: Path, tmp_path: Path
) -> None:
    """Item 1: a sparse 3 GB model.safetensors whose header is consistent but holds one extra tensor is refused
    from its header, under a 4 GB address-space limit (it was read whole: 6.2 GB, MemoryError)."""
    path = run / rundir.WEIGHTS_FILE
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header, data = json.loads(raw[8 : 8 + length]), raw[8 + length :]
    extra = 3 << 30
    header["zzz.extra"] = {"dtype": "U8", "shape": [extra], "data_offsets": [len(data), len(data) + extra]}
    encoded = json.dumps(header).encode()
    with open(path, "wb") as handle:  # holes, not 3 GB of disk
        handle.write(len(encoded).to_bytes(8, "little") + encoded + data)
        handle.truncate(8 + len(encoded) + len(data) + extra)
    result = cli_limited(["sample", str(run), "-n", "5"], tmp_path, address_space=4 << 30)
    assert result.returncode == 1 and "internal error" not in result.stderr, result.stderr
    assert "holds tensors the model does not have (zzz.extra)" in result.stderr.strip().splitlines()[-1]


def test_memory_guards_respect_the_address_space_limit(tmp_path: Path) -> None:
    """Item 4: under `prlimit --as=4000000000` a model too big for the limit is the documented one-line
    refusal (it was an internal allocation error: the guard read MemAvailable alone)."""
    corpus = write_corpus(tmp_path, chars=1500)
    args = ["train", str(corpus), "--out", str(tmp_path / "r"), *TINY_FLAGS, "--hidden", "4096", "--layers", "2"]
    result = cli_limited(args, tmp_path, address_space=4_000_000_000)
    assert result.returncode == 1 and "internal error" not in result.stderr, result.stderr
    assert "parameters; to train it needs about" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "r").exists()


def test_an_overlong_line_is_split_at_char_level_and_refused_at_word_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 3: a corpus with no line break no longer grows memory with its length (the carried partial line
    was the whole file): the char level reads it in bounded pieces with the same ids; word and subword
    levels, which need whole lines, refuse it with the line's number."""
    import tracemalloc

    import numpy as np

    from charrnn.core import corpus as corpus_module

    path = tmp_path / "one-line.txt"
    path.write_bytes(b"ab\r\ncd\n" + b"to be or not " * 300_000 + b"end")  # a third line of 3.9 MB, no break
    tracemalloc.start()
    pieces = [len(p) for p in corpus_module.read_chunks(path, chunk_bytes=1 << 16, max_line=1 << 18)]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert max(pieces) < (1 << 18) + (1 << 17) and sum(pieces) == len(path.read_text().replace("\r\n", "\n"))
    assert peak < 8 << 20, peak  # the whole line is 3.9 MB of text: it was held (and copied) whole
    joined = "".join(corpus_module.read_chunks(path, chunk_bytes=1 << 16, max_line=1 << 18))
    assert joined == path.read_text(encoding="utf-8").replace("\r\n", "\n")

    monkeypatch.setattr(corpus_module, "MAX_LINE_CHARS", 1 << 18)
    assert run_cli(["prepare", str(path), "--cache-dir", str(tmp_path / "c")]).code == 0
    [tokens] = (tmp_path / "c").glob("tokens-*/tokens.bin")
    from charrnn.core.tokenizers import tokenizer_from_files

    [vocab] = (tmp_path / "c").glob("vocab-*/tokenizer.json")
    tokenizer = tokenizer_from_files({"tokenizer.json": vocab.read_bytes()})
    expected = [i for line in joined.split("\n") for i in [*tokenizer.encode(line), 2]]
    assert np.fromfile(tokens, dtype=np.uint8).tolist() == expected  # split pieces, the same ids
    for level in ("word", "subword"):
        refused = run_cli(["prepare", str(path), "--level", level, "--cache-dir", str(tmp_path / level)])
        one_line(refused, "line 3 is longer than 262,144 characters", "--level char")


def test_batch_and_input_sizes_are_capped(trained_run: Path, tmp_path: Path) -> None:
    """Item 4: `sample --num 1000000`, `seq2seq translate --beam 1000000`, a 17 MB line to `score-sentence
    --file`, `yes | score-sentence` are one line each; a sentence too long for the memory left under
    RLIMIT_AS is refused before its scores are computed."""
    one_line(run_cli(["sample", str(trained_run), "--num", "1000000"]), "--num must be between 1 and 10,000")
    one_line(
        run_cli(["seq2seq", "translate", str(tmp_path), "x", "--beam", "1000000"]), "--beam must be between 1"
    )
    long_line = tmp_path / "long.txt"
    long_line.write_text("a" * (17 << 20) + "\n")
    one_line(run_cli(["score-sentence", str(trained_run), "--file", str(long_line)]), "more than 16,777,216")
    endless = "y\n" * (9 << 20)  # what `yes` gives, cut here at 18 MiB
    one_line(run_cli(["score-sentence", str(trained_run)], stdin=endless), "standard input holds more than")
    long_line.write_text("a" * 5_000_000 + "\n")
    result = cli_limited(
        ["score-sentence", str(trained_run), "--file", str(long_line)], tmp_path, address_space=3 << 30
    )
    assert result.returncode == 1 and "internal error" not in result.stderr, result.stderr
    assert "A sentence of 5,000,001 tokens needs about" in result.stderr.strip().splitlines()[-1]


SLOW_BUILD = """
import sys, time
from charrnn.core import corpus, token_cache
def slow(*args, **kwargs):  # a token cache build that takes seconds: read 2 KB at a time, slowly
    for piece in corpus.read_chunks(*args, **{**kwargs, "chunk_bytes": 2048}):
        time.sleep(0.05)
        yield piece
token_cache.read_chunks = slow
from charrnn.cli import main
main(sys.argv[1:])
"""


def start_slow(args: list[str], cwd: Path, **streams) -> subprocess.Popen:
    """`charrnn ARGS` in a subprocess whose token cache build is slow (see SLOW_BUILD)."""
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **streams}
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_BUILD, *args], cwd=cwd, env=subprocess_env(), text=True, **streams
    )


def wait_for(predicate, process: subprocess.Popen, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*.tmp")] if folder.exists() else []


def test_endless_stdin_is_bounded_and_its_spool_always_removed(tmp_path: Path) -> None:
    """Item 2: `yes x | charrnn train -` stops at --max-bytes (default 8 GiB), a file-size limit is one line,
    SIGTERM ends the copy (exit 143); the spool `stdin.PID.tmp` never stays behind."""
    import signal

    def endless() -> subprocess.Popen:
        return subprocess.Popen(["yes", "to be or not to be"], stdout=subprocess.PIPE)

    cache = tmp_path / "cache"
    train = ["train", "-", "--out", str(tmp_path / "r"), "--cache-dir", str(cache), *TINY_FLAGS]
    source = endless()
    capped = cli_limited([*train, "--max-bytes", "1000000"], tmp_path, stdin=source.stdout)
    source.kill()
    assert capped.returncode == 1 and "more than --max-bytes 1,000,000" in capped.stderr, capped.stderr
    source = endless()
    full = cli_limited(train, tmp_path, fsize=2_000_000, stdin=source.stdout)
    source.kill()
    assert full.returncode == 1 and "Could not copy standard input" in full.stderr, full.stderr
    assert "internal error" not in full.stderr and temporaries(cache) == [] and not (tmp_path / "r").exists()

    source = endless()
    process = start_slow(train, tmp_path, stdin=source.stdout)
    wait_for(lambda: temporaries(cache) != [], process)  # copying
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    source.kill()
    assert process.returncode == 143 and "charrnn: terminated" in err and temporaries(cache) == [], err


def test_signals_while_blocked_end_the_command_and_clean_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 5: a FIFO corpus in a TOML config is refused, never waited on; SIGTERM during the cache build
    inside `train` ends it at once (143); Ctrl-C in `prepare` says so (130) and removes its temporary file,
    and a temporary a killed build left is removed by the next."""
    import signal

    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "fifo.toml").write_text(f'corpus = "{tmp_path / "pipe.txt"}"\n')
    fifo = cli_limited(
        ["train", "--config", str(tmp_path / "fifo.toml"), "--out", str(tmp_path / "f")], tmp_path, timeout=60
    )
    assert fifo.returncode == 1 and "is not a regular file (a FIFO" in fifo.stderr, fifo.stderr

    corpus = write_corpus(tmp_path, chars=60_000)
    cache = _user_cache(tmp_path, monkeypatch)
    for command, stop, code, word in (
        ("train", signal.SIGTERM, 143, "terminated"),
        ("prepare", signal.SIGINT, 130, "interrupted"),
    ):
        args = [command, str(corpus), *(["--out", str(tmp_path / "r"), *TINY_FLAGS] if command == "train" else [])]
        process = start_slow(args, tmp_path)
        wait_for(lambda: any(name.startswith("tokens.bin.") for name in temporaries(cache)), process)  # encoding
        process.send_signal(stop)
        _, err = process.communicate(timeout=30)
        assert process.returncode == code and f"charrnn: {word}" in err, (command, process.returncode, err)
        assert temporaries(cache) == [] and "Traceback" not in err
    [tokens] = cache.glob("tokens-*")
    (tokens / "tokens.bin.999999999.tmp").write_bytes(b"left by a build killed with SIGKILL")
    assert run_cli(["prepare", str(corpus)]).code == 0
    assert temporaries(cache) == []


def test_a_full_or_closed_stderr_never_costs_the_run(tmp_path: Path) -> None:
    """Item 6: `train ... 2>/dev/full` and `train ... 2>&1 | head -1` train to the end and save."""
    corpus = write_corpus(tmp_path, chars=1500)
    args = ["--max-steps", "30", "--log-every", "1", "--eval-every", "10", *TINY_FLAGS]
    with open("/dev/full", "w") as full:
        result = cli_limited(["train", str(corpus), "--out", str(tmp_path / "full"), *args], tmp_path, stderr=full)
    assert result.returncode == 0 and (tmp_path / "full" / rundir.WEIGHTS_FILE).is_file()
    process = subprocess.Popen(
        [sys.executable, "-c", LIMITED, "0", "0", "train", str(corpus), "--out", str(tmp_path / "head"), *args],
        cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout.readline()  # `head -1`: one line, then the pipe is closed
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    state = rundir.read_metadata(tmp_path / "head" / rundir.RESUME_FILE)["train_state"]
    assert state["step"] == 30 and (tmp_path / "head" / rundir.WEIGHTS_FILE).is_file()


# --- torchrun (item 15) -------------------------------------------------------------------------------------------


def test_torchrun_environment_and_resume_with_overwrite_are_one_line(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 15: WORLD_SIZE=abc, WORLD_SIZE=2 without RANK, `--resume X --overwrite` are one line each."""
    corpus = write_corpus(tmp_path, chars=1500)
    train = ["train", str(corpus), "--out", str(tmp_path / "r"), "--max-steps", "2", *TINY_FLAGS]
    monkeypatch.setenv("WORLD_SIZE", "abc")
    one_line(run_cli(train), "WORLD_SIZE must be a whole number", "'abc'")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    one_line(run_cli(train), "RANK is not set")
    monkeypatch.delenv("WORLD_SIZE")
    before = snapshot(run)
    one_line(run_cli(["train", "--resume", str(run), "--overwrite"]), "--resume continues a run and --overwrite")
    assert snapshot(run) == before


def test_a_killed_rank_leaves_the_survivor_saying_so_in_one_line(tmp_path: Path) -> None:
    """Item 15: SIGKILL to one of two `--nproc 2` processes: the survivor says that another process died and
    how to resume (it was `internal error: RuntimeError: [gloo] Connection reset by peer`)."""
    import signal

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000])
    run = tmp_path / "run"
    args = ["train", str(corpus), "--out", str(run), "--nproc", "2", "--max-steps", "100000", *TINY_FLAGS]
    process = subprocess.Popen(
        [sys.executable, "-m", "charrnn.cli", *args], cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: any(r.get("step", 0) >= 3 for r in rundir.read_metrics(run)), process, timeout=120)
        workers = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        ranks = {pid: _environment(pid).get("RANK") for pid in workers}
        [victim] = [int(pid) for pid, rank in ranks.items() if rank == "1"]
        os.kill(victim, signal.SIGKILL)  # a process this test started (a child of its charrnn)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0 and "internal error" not in err and "Traceback" not in err, err[-3000:]
    assert "training process 0 of 2 lost the others" in err and f"charrnn train --resume {run}" in err, err[-3000:]
    assert "process 1 was killed by SIGKILL" in err.strip().splitlines()[-1], err[-3000:]


def _environment(pid: str) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
