"""Run directories: atomic writes, checksums, nothing unpickled, and exact messages for incomplete or mismatched runs."""

from __future__ import annotations

import ast
import errno
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from charrnn.core import rundir
from charrnn.core.errors import CharRNNError
from charrnn.core.resume import load_resume_state
from charrnn.lm.run import LanguageModelRun, read_config
from charrnn.lm.training import train_language_model
from tests.support import REPO_ROOT, run_cli, tiny_config, train_tiny_run, write_corpus


def assert_one_line_error(result, *fragments: str) -> None:
    """A non-zero exit, no traceback, and the error as one line: the last (the only one outside training)."""
    assert result.code != 0
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert [line for line in lines if line.startswith("charrnn:")] == lines[-1:], result.stderr
    assert lines[-1].startswith("charrnn: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], result.stderr


# --- atomic writes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fail_in", ["write", "fsync", "chmod", "replace"])
@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_interrupted_write_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_in: str, error: BaseException
) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old contents")
    if fail_in == "write":
        real_fdopen = os.fdopen

        class Failing:
            def __init__(self, handle) -> None:
                self.handle = handle

            def __enter__(self):
                return self

            def __exit__(self, *exc) -> None:
                self.handle.close()

            def write(self, data: bytes) -> None:
                self.handle.write(data[: len(data) // 2])  # half of it reached the disk
                raise error

        monkeypatch.setattr(os, "fdopen", lambda fd, mode: Failing(real_fdopen(fd, mode)))
    else:

        def fail(*args, **kwargs):
            raise error

        monkeypatch.setattr(os, fail_in, fail)
    expected = CharRNNError if isinstance(error, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as caught:
        rundir.atomic_write(target, b"new contents that are longer")
    monkeypatch.undo()
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]
    if expected is CharRNNError:
        assert "disk full" in str(caught.value) and "previous version of the file is intact" in str(caught.value)


def test_full_disk_during_a_training_save_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = write_corpus(tmp_path, chars=600)
    run = tmp_path / "run"
    train_language_model(tiny_config(corpus, max_steps=5, save_every=5), run)
    before = (run / rundir.RESUME_FILE).read_bytes()
    real_fsync = os.fsync

    def full_disk_for_resume_files(fd: int) -> None:
        if ".resume.safetensors." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell which file is being synced")
    monkeypatch.setattr(os, "fsync", full_disk_for_resume_files)
    result = run_cli(["train", "--resume", str(run), "--max-steps", "20", "--threads", "1"])
    assert_one_line_error(result, "disk full", "resume.safetensors", "previous version of the file is intact")
    monkeypatch.undo()
    assert (run / rundir.RESUME_FILE).read_bytes() == before  # untouched: step 5's checkpoint
    assert not list(run.glob(".*.tmp"))
    resumed = run_cli(["train", "--resume", str(run), "--max-steps", "12", "--threads", "1"])
    assert resumed.code == 0, resumed.stderr


# --- checksums and damaged files ----------------------------------------------------------------------------


def test_tensors_round_trip_with_metadata(tmp_path: Path) -> None:
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    rundir.save_tensors(tmp_path / "t.safetensors", tensors, {"step": 3, "text": "ünï"})
    loaded, meta = rundir.load_tensors(tmp_path / "t.safetensors")
    assert meta == {"step": 3, "text": "ünï"}
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)


@pytest.mark.parametrize("damage", ["flip-data-byte", "truncate", "garbage", "empty", "bad-metadata"])
def test_corrupted_safetensors_is_refused_with_one_line(run: Path, damage: str) -> None:
    path = run / rundir.WEIGHTS_FILE
    raw = bytearray(path.read_bytes())
    if damage == "flip-data-byte":
        raw[-5] ^= 0x40  # a flipped bit in a weight: still parses, only the checksum notices
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "garbage":
        raw = bytearray(os.urandom(4096))
    elif damage == "empty":
        raw = bytearray()
    else:
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
        header["__metadata__"]["json"] = "{not json"
        new_header = json.dumps(header, separators=(",", ":")).encode()
        assert len(new_header) <= header_len
        raw[8 : 8 + header_len] = new_header.ljust(header_len)
    path.write_bytes(bytes(raw))
    result = run_cli(["sample", str(run), "--length", "5"])
    expected = "damaged" if damage in ("flip-data-byte", "bad-metadata") else "not a valid safetensors file"
    assert_one_line_error(result, str(path), expected)


def test_corrupted_resume_file_is_refused_on_resume(run: Path) -> None:
    path = run / rundir.RESUME_FILE
    raw = bytearray(path.read_bytes())
    raw[-9] ^= 0x01
    path.write_bytes(bytes(raw))
    result = run_cli(["train", "--resume", str(run), "--max-steps", "10"])
    assert_one_line_error(result, "resume.safetensors", "checksum")


# --- nothing is ever unpickled ------------------------------------------------------------------------------


class Payload:
    """Unpickling this creates the marker file: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_payload_is_live(tmp_path: Path) -> None:
    """Control: the payload really runs code when something unpickles it."""
    marker = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
@pytest.mark.parametrize(
    ("target", "command"),
    [
        (rundir.WEIGHTS_FILE, ["sample", "{run}", "--length", "5"]),
        (rundir.WEIGHTS_FILE, ["score-sentence", "{run}", "First Citizen"]),
        (rundir.RESUME_FILE, ["train", "--resume", "{run}", "--max-steps", "10"]),
        (rundir.CONFIG_FILE, ["sample", "{run}", "--length", "5"]),
        ("tokenizer.json", ["sample", "{run}", "--length", "5"]),
    ],
)
def test_pickle_payloads_are_refused_and_never_run(
    run: Path, tmp_path: Path, how: str, target: str, command: list[str]
) -> None:
    marker = tmp_path / "marker"
    obj = {"weights": Payload(marker)}
    if how == "pickle":
        (run / target).write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, run / target)
    result = run_cli([part.format(run=run) for part in command])
    assert_one_line_error(result, target)
    assert any(word in result.stderr for word in ("not a valid safetensors file", "not valid JSON", "damaged"))
    assert not marker.exists()


FORBIDDEN_MODULES = {"pickle", "_pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle"}


def unpickling_calls(source: str) -> list[int]:
    """Lines that import an unpickling module or call torch.load / numpy.load."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            bad = any(alias.name.split(".")[0] in FORBIDDEN_MODULES for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            root = (node.module or "").split(".")[0]
            bad = root in FORBIDDEN_MODULES or (
                root in ("torch", "numpy") and any(alias.name == "load" for alias in node.names)
            )
        elif isinstance(node, ast.Attribute):
            bad = (
                node.attr == "load"
                and isinstance(node.value, ast.Name)
                and node.value.id in ("torch", "np", "numpy")
            )
        else:
            continue
        if bad:
            lines.append(node.lineno)
    return lines


def test_the_unpickling_check_finds_what_it_looks_for() -> None:
    snippet = "import torch\nimport pickle\nfrom torch import load\nx = torch.load(path, weights_only=True)\n"
    assert unpickling_calls(snippet) == [2, 3, 4]


def test_no_code_path_can_unpickle() -> None:
    """No torch.load (not even with weights_only=True), pickle, marshal, shelve, dill or joblib in the package."""
    sources = sorted((REPO_ROOT / "charrnn").rglob("*.py"))
    assert len(sources) >= 10
    offenders = {src.name: unpickling_calls(src.read_text(encoding="utf-8")) for src in sources}
    assert {name: lines for name, lines in offenders.items() if lines} == {}


# --- versions, incomplete directories, mismatched files -----------------------------------------------------


def test_run_records_charrnn_and_format_versions(run: Path) -> None:
    from charrnn import __version__
    from charrnn.core.version import FORMAT_VERSION

    config = json.loads((run / rundir.CONFIG_FILE).read_text())
    assert (config["charrnn_version"], config["format_version"]) == (__version__, FORMAT_VERSION)
    _, meta = rundir.load_tensors(run / rundir.RESUME_FILE)
    assert (meta["charrnn_version"], meta["format_version"]) == (__version__, FORMAT_VERSION)


def test_newer_format_version_is_refused(run: Path) -> None:
    config = json.loads((run / rundir.CONFIG_FILE).read_text())
    config["format_version"], config["charrnn_version"] = 99, "9.9.9"
    (run / rundir.CONFIG_FILE).write_text(json.dumps(config))
    assert_one_line_error(run_cli(["sample", str(run)]), "format version 99", "9.9.9")


def test_resume_file_of_another_format_version_is_refused(run: Path) -> None:
    tensors, meta = rundir.load_tensors(run / rundir.RESUME_FILE)
    meta["format_version"] = 0
    rundir.save_tensors(run / rundir.RESUME_FILE, tensors, meta)
    result = run_cli(["train", "--resume", str(run), "--max-steps", "10"])
    assert_one_line_error(result, "resume.safetensors", "format version 0")


def test_resume_file_missing_a_part_says_so(run: Path) -> None:
    tensors, meta = rundir.load_tensors(run / rundir.RESUME_FILE)
    del meta["optim_param_groups"]
    rundir.save_tensors(run / rundir.RESUME_FILE, tensors, meta)
    result = run_cli(["train", "--resume", str(run), "--max-steps", "10"])
    assert_one_line_error(result, "incomplete", "optim_param_groups")


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        ([rundir.CONFIG_FILE], "config.json is missing"),
        (["tokenizer.json"], "incomplete: tokenizer.json missing"),
        # without model.safetensors the latest weights of resume.safetensors are used; without both, none are left
        ([rundir.WEIGHTS_FILE, rundir.RESUME_FILE], "incomplete: model.safetensors missing"),
        (
            ["tokenizer.json", rundir.WEIGHTS_FILE, rundir.RESUME_FILE],
            "incomplete: tokenizer.json, model.safetensors missing",
        ),
    ],
)
def test_incomplete_run_directory_names_what_is_missing(run: Path, remove: list[str], expected: str) -> None:
    for name in remove:
        (run / name).unlink()
    assert_one_line_error(run_cli(["sample", str(run), "--length", "5"]), str(run), expected)


def test_missing_best_weights_fall_back_to_the_latest_with_a_note(run: Path) -> None:
    """Before (or without) model.safetensors, sample/score-sentence/load use resume.safetensors' weights."""
    (run / rundir.WEIGHTS_FILE).unlink()
    step = rundir.load_tensors(run / rundir.RESUME_FILE)[1]["train_state"]["step"]
    for command in (["sample", str(run), "--length", "5"], ["score-sentence", str(run), "First Citizen"]):
        result = run_cli(command)
        assert result.code == 0 and result.stdout, result.stderr
        assert "note:" in result.stderr and "resume.safetensors" in result.stderr
        assert f"step {step}" in result.stderr and "Traceback" not in result.stderr
    loaded = LanguageModelRun.load(run)
    assert loaded.note is not None and f"step {step}" in loaded.note


def test_missing_resume_file(run: Path) -> None:
    (run / rundir.RESUME_FILE).unlink()
    result = run_cli(["train", "--resume", str(run), "--max-steps", "10"])
    assert_one_line_error(result, "no resume.safetensors")


def other_run(tmp_path: Path) -> tuple[Path, int]:
    """A second tiny run with a smaller vocabulary, and that vocabulary's size."""
    corpus = tmp_path / "other.txt"
    corpus.write_text("abcab cba bac\n" * 20, encoding="utf-8")
    other = tmp_path / "other"
    train_language_model(tiny_config(corpus, max_steps=2), other)
    return other, json.loads((other / rundir.CONFIG_FILE).read_text())["model"]["vocab_size"]


def test_tokenizer_of_another_size_names_both_sizes(run: Path, tmp_path: Path) -> None:
    other, size = other_run(tmp_path)
    (run / "tokenizer.json").write_bytes((other / "tokenizer.json").read_bytes())
    own = json.loads((run / rundir.CONFIG_FILE).read_text())["model"]["vocab_size"]
    assert own != size
    result = run_cli(["sample", str(run), "--length", "5"])
    assert_one_line_error(result, f"tokenizer has {size} entries", f"embedding has {own} rows")


def test_config_and_tokenizer_of_another_run_are_caught_by_the_embedding_rows(run: Path, tmp_path: Path) -> None:
    other, size = other_run(tmp_path)
    for name in ("tokenizer.json", rundir.CONFIG_FILE):
        (run / name).write_bytes((other / name).read_bytes())
    rows = rundir.load_tensors(run / rundir.WEIGHTS_FILE)[0][rundir.EMBEDDING_KEY].shape[0]
    result = run_cli(["sample", str(run), "--length", "5"])
    assert rows != size
    assert_one_line_error(result, f"tokenizer has {size} entries", f"{rows} embedding rows")


def test_tokenizer_of_the_same_size_but_other_units_is_caught(run: Path) -> None:
    payload = json.loads((run / "tokenizer.json").read_text(encoding="utf-8"))
    units = payload["units"]
    units[3], units[4] = units[4], units[3]  # same size, two characters swapped
    (run / "tokenizer.json").write_text(json.dumps(payload), encoding="utf-8")
    assert_one_line_error(run_cli(["sample", str(run), "--length", "5"]), "not the one", "trained with")
    result = run_cli(["train", "--resume", str(run), "--max-steps", "10"])
    assert_one_line_error(result, "not the one", "resume.safetensors")


def test_a_killed_save_leaves_a_temporary_that_resume_cleans_up(run: Path, tmp_path: Path) -> None:
    stale = run / ".resume.safetensors.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    loaded = LanguageModelRun.load(run)  # loaders ignore it
    tokenizer, model = loaded.tokenizer, loaded.model
    assert model.config.vocab_size == tokenizer.vocab_size
    result = run_cli(["train", "--resume", str(run), "--max-steps", "10", "--threads", "1"])
    assert result.code == 0, result.stderr
    assert not stale.exists()


def test_resume_drops_metrics_logged_after_the_checkpoint(run: Path) -> None:
    state = load_resume_state(run, *_model_and_optimizer(run), torch.device("cpu")).state
    with open(run / rundir.METRICS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"step": state.step + 1, "train_loss": 9.0}) + "\n")
        handle.write('{"step": 99, "train_lo')  # torn by a kill
    result = run_cli(["train", "--resume", str(run), "--max-steps", str(state.step + 2), "--threads", "1"])
    assert result.code == 0, result.stderr
    records = rundir.read_metrics(run)
    train_steps = [r["step"] for r in records if "train_loss" in r]
    assert train_steps == sorted(set(train_steps)) and train_steps[-2:] == [state.step + 1, state.step + 2]
    assert 9.0 not in [r.get("train_loss") for r in records]
    assert all(
        line.startswith("{") and line.endswith("}")
        for line in (run / rundir.METRICS_FILE).read_text().splitlines()
    )


def _model_and_optimizer(run: Path):
    from charrnn.core.optim import make_optimizer
    from charrnn.lm.model import LanguageModel

    config = read_config(run)
    model = LanguageModel(config.model)
    return model, make_optimizer(model, config.training)


def test_damaged_model_settings_in_config(run: Path) -> None:
    config = json.loads((run / rundir.CONFIG_FILE).read_text())
    config["model"]["hidden"] = "big"
    (run / rundir.CONFIG_FILE).write_text(json.dumps(config))
    assert_one_line_error(run_cli(["sample", str(run), "--length", "5"]), "config.json is damaged")


def test_resume_needs_the_same_corpus(tmp_path: Path) -> None:
    run = train_tiny_run(tmp_path)  # its own run: the shared run's corpus must stay as it is
    corpus = Path(read_config(run).corpus)
    corpus.write_bytes(corpus.read_bytes().replace(b"Citizen", b"Burgher"))
    result = run_cli(["train", "--resume", str(run), "--max-steps", "10"])
    assert_one_line_error(result, "changed since this run started")
    corpus.unlink()
    result = run_cli(["train", "--resume", str(run), "--max-steps", "10"])
    assert_one_line_error(result, str(corpus), "is missing", "resume needs the same data")
