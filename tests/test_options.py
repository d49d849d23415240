"""Each option is declared once, on its config dataclass: the CLI, charrnn.train, TOML files and config.json agree."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import typer

from charrnn.api import effective_config
from charrnn.cli import app, main
from charrnn.core.errors import CharRNNError
from charrnn.core.options import get_path
from charrnn.kinds import model_kind
from charrnn.lm.config import RunConfig
from charrnn.seq2seq.config import Seq2SeqRunConfig

COMMANDS = {
    "lm": (["train"], RunConfig, model_kind("lm").options),
    "seq2seq": (["seq2seq", "train"], Seq2SeqRunConfig, model_kind("seq2seq").options),
}


def click_params(path: list[str]) -> dict[str, typing.Any]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {p.name: p for p in command.params}


def user_fields(config: typing.Any) -> list[str]:
    """Dotted paths of every user-settable field of a run config (all but derived and bookkeeping ones)."""
    paths = []
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        if dataclasses.is_dataclass(hints[f.name]):
            for inner in dataclasses.fields(getattr(config, f.name)):
                if inner.metadata.get("help") and not inner.metadata.get("derived"):
                    paths.append(f"{f.name}.{inner.name}")
        elif f.metadata.get("help") and not f.metadata.get("derived"):
            paths.append(f.name)
    return paths


@pytest.mark.parametrize("kind", ["lm", "seq2seq"])
def test_every_cli_default_is_the_dataclass_default(kind: str) -> None:
    path, config_class, specs_of = COMMANDS[kind]
    defaults = config_class()
    params = click_params(path)
    specs = specs_of()
    covered = set()
    for spec in specs.values():
        covered.update(spec.paths)
        for field_path in spec.paths:
            if spec.name.startswith(("source_", "target_")):
                assert spec.default is None  # "as --level": the shared option carries the default
            else:
                assert spec.default == get_path(defaults, field_path), field_path
        if spec.cli:
            assert spec.name in params, f"{spec.name} has no CLI flag"
            assert params[spec.name].default == spec.default, spec.name
            assert spec.help and spec.help.split()[0] in " ".join(params[spec.name].help.split())
    assert covered == set(user_fields(defaults)), "every user field is an option"


def test_seq2seq_defaults_live_in_its_dataclasses() -> None:
    params = click_params(["seq2seq", "train"])
    assert params["schedule"].default == Seq2SeqRunConfig().training.schedule == "plateau"
    assert params["level"].default == Seq2SeqRunConfig().source_tokenizer.level == "word"
    assert click_params(["train"])["level"].default == RunConfig().tokenizer.level == "char"


def test_configs_are_built_by_keyword_everywhere() -> None:
    """No positional construction of a config dataclass in the package (they drifted before)."""
    import re

    package = Path(__file__).resolve().parent.parent / "charrnn"
    pattern = re.compile(r"\b(ModelConfig|Seq2SeqConfig|TokenizerConfig|RunConfig|Seq2SeqRunConfig)\((?!\)|\w+=)")
    offenders = [
        f"{path.name}: {line.strip()}"
        for path in package.rglob("*.py")
        for line in path.read_text().splitlines()
        if pattern.search(line) and "class " not in line
    ]
    assert offenders == []


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_toml_file_sets_options_and_flags_override_it(tmp_path: Path, corpus_file: Path) -> None:
    settings = tmp_path / "run.toml"
    settings.write_text('[model]\nhidden = 48\ncell = "gru"\n[training]\nmax_steps = 7\nlr = 0.01\n')
    config, _ = effective_config(corpus_file, config=settings, hidden=64)
    assert (config.model.hidden, config.model.cell, config.training.max_steps, config.training.lr) == (
        64,
        "gru",
        7,
        0.01,
    )
    assert config.model.embed == RunConfig().model.embed  # untouched settings keep their defaults


def test_print_config_round_trips(tmp_path: Path, corpus_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        ["train", str(corpus_file), "--print-config", "--hidden", "40", "--max-steps", "9"], capsys
    )
    assert code == 0, err
    assert "hidden = 40" in out and "max_steps = 9" in out and "eval_tokens = 200000" in out
    saved = tmp_path / "printed.toml"
    saved.write_text(out)
    again, _ = effective_config(config=saved)
    first, _ = effective_config(corpus_file, hidden=40, max_steps=9)
    assert dataclasses.asdict(again) == dataclasses.asdict(first)
    assert not (Path("checkpoints") / f"{corpus_file.stem}-char").exists()  # printing trains nothing


def test_seq2seq_print_config_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        ["seq2seq", "train", "--print-config", "--target-level", "char", "--attention", "bahdanau"], capsys
    )
    assert code == 0, err
    saved = tmp_path / "s2s.toml"
    saved.write_text(out)
    again, _ = effective_config(kind="seq2seq", config=saved)
    assert again.target_tokenizer.level == "char" and again.source_tokenizer.level == "word"
    assert again.model.attention == "bahdanau"
    assert dataclasses.asdict(again) == dataclasses.asdict(
        effective_config(kind="seq2seq", target_level="char", attention="bahdanau")[0]
    )


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[model]\nhiden = 3\n", "model.hiden"),
        ('[training]\nmax_steps = "ten"\n', "training.max_steps"),
        ("[model]\nhidden = 64.5\n", "model.hidden"),
        ("[model]\nvocab_size = 10\n", "model.vocab_size"),
        ("[tokenizer]\nlowercase = 1\n", "tokenizer.lowercase"),
        ("[gpu]\nx = 1\n", "gpu"),
        ("hidden = [1\n", "not valid TOML"),
    ],
)
def test_bad_config_file_gives_one_line_naming_the_key(
    tmp_path: Path, corpus_file: Path, capsys: pytest.CaptureFixture[str], toml: str, named: str
) -> None:
    settings = tmp_path / "bad.toml"
    settings.write_text(toml)
    code, _, err = run_cli(["train", str(corpus_file), "--config", str(settings), "--print-config"], capsys)
    assert code == 1
    assert err.startswith("charrnn: error:") and named in err and len(err.strip().splitlines()) == 1


def test_api_refuses_unknown_and_mistyped_options(corpus_file: Path) -> None:
    with pytest.raises(CharRNNError, match="Unknown option 'hiden'"):
        effective_config(corpus_file, hiden=3)
    with pytest.raises(CharRNNError, match="^hidden must be a whole number"):  # the API names its keywords
        effective_config(corpus_file, hidden="64")
    with pytest.raises(CharRNNError, match="weight_decay"):
        effective_config(corpus_file, weight_decay=-1.0)


def test_side_options_override_the_shared_one() -> None:
    config, _ = effective_config(
        kind="seq2seq", level="subword", vocab_size=500, target_level="char", target_vocab_size=None
    )
    assert (config.source_tokenizer.level, config.source_tokenizer.vocab_size) == ("subword", 500)
    assert config.target_tokenizer.level == "char" and config.target_tokenizer.vocab_size == 500


def test_a_config_files_relative_paths_are_read_from_its_folder(
    tmp_path: Path, corpus_file: Path, capsys, monkeypatch
) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    corpus_file.rename(project / "data" / "alice.txt")
    (project / "data" / "more.txt").write_text("More text.\n", encoding="utf-8")
    (project / "run.toml").write_text(
        'corpus = "data/alice.txt"\nmore_corpora = ["data/more.txt"]\ncache_dir = "cache"\n', encoding="utf-8"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config, _ = effective_config(config="../project/run.toml")
    assert config.corpus == str(project / "data" / "alice.txt")
    assert config.more_corpora == [str(project / "data" / "more.txt")]
    assert config.cache_dir == str(project / "cache")
    code, out, err = run_cli(["train", "--config", "../project/run.toml", "--print-config"], capsys)
    assert code == 0, err
    assert f'corpus = "{project / "data" / "alice.txt"}"' in out  # what --print-config writes reads from anywhere
    printed = tmp_path / "printed.toml"
    printed.write_text(out, encoding="utf-8")
    assert effective_config(config=printed)[0].corpus == config.corpus
