"""The documentation is true as written: README.md, docs/*.md and bench/README.md run, parse and link.

- every ```python block runs, in a folder holding what the examples name (small copies of the bundled
  corpora, a few labelled names in names/, a tiny language model at checkpoints/tinyshakespeare-char, a tiny seq2seq run at
  checkpoints/multi30k-de-en-small-luong-general, and that language model exported to ONNX);
- every `charrnn ...` command line parses with the real CLI (the subcommand exists, every option is known
  and has its value, numbers are numbers, nothing is left over); no command is run. Command lines are the lines of
  ```bash/```sh blocks, the `$ ` lines of ```console/```text blocks and inline code spans starting with
  `charrnn `; shell syntax is read with shlex (pipes, `&&`, `;`, redirections, `\\` continuations,
  comments, `VAR=value` prefixes, `python -m charrnn` and `torchrun ... -m charrnn`);
- every relative link (and #anchor) points to a file (and heading) that exists;
- the README stays a front door: at most 300 lines.

A block that is not meant to run (output, a listing) is fenced as ```text; every fence names its language.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

import charrnn
import charrnn.cli

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    REPO_ROOT / "README.md",
    *sorted((REPO_ROOT / "docs").glob("*.md")),
    REPO_ROOT / "bench" / "README.md",
]
README_MAX_LINES = 300

SHELL = {"bash", "sh", "shell"}  # every line is a command
CONSOLE = {"console", "text"}  # lines starting with "$ " are commands, the rest is output
OTHER = {"python", "mermaid", "toml", "json"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the first line inside the fence
    language: str
    text: str

    def where(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def split_markdown(path: Path) -> tuple[list[Block], str]:
    """The fenced blocks of a markdown file, and its prose (fenced lines blanked, so line numbers hold)."""
    blocks, prose, fence = [], [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if fence is None:
            opening = re.match(r"\s*```(\S*)\s*$", line)
            if opening:
                fence = (number + 1, opening.group(1), [])
                prose.append("")
            else:
                prose.append(line)
        elif re.match(r"\s*```\s*$", line):
            blocks.append(Block(path, fence[0], fence[1], "\n".join(fence[2]) + "\n"))
            fence = None
            prose.append("")
        else:
            fence[2].append(line)
            prose.append("")
    assert fence is None, f"{path.name}: a fence opened at line {fence[0] - 1} is never closed"
    return blocks, "\n".join(prose)


def code_spans(prose: str) -> Iterator[tuple[int, str]]:
    """(line, text) of each inline code span; a span may run over a line break, as markdown allows."""
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", prose):
        yield prose.count("\n", 0, match.start()) + 1, " ".join(match.group(1).split())


# ---------------------------------------------------------------------------------------------------
# Command lines


def shell_lines(block: Block) -> Iterator[tuple[int, str]]:
    """(line, command) of a block: continuation lines joined; in console/text blocks only `$ ` lines."""
    pending, start = "", 0
    for offset, line in enumerate(block.text.splitlines()):
        if not pending:
            start = block.line + offset
            if block.language in CONSOLE:
                if not line.startswith("$ "):
                    continue
                line = line[2:]
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


SEPARATORS = {"|", "||", "&&", ";", "&"}


def charrnn_invocations(command: str) -> Iterator[list[str]]:
    """The charrnn argument lists in one shell command line (`charrnn ARGS`, `python -m charrnn ARGS`, ...)."""
    command = re.sub(r"<[a-z][a-z0-9_-]*>", "PLACEHOLDER", command)  # <corpus>-style placeholders
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    segments: list[list[str]] = [[]]
    tokens = iter(list(lexer))
    for token in tokens:
        if token in SEPARATORS:
            segments.append([])
        elif token and set(token) <= set("<>&"):  # a redirection: drop its target too
            next(tokens, None)
        else:
            segments[-1].append(token)
    for words in segments:
        while words and re.match(r"[A-Za-z_]\w*=", words[0]):  # VAR=value before the command
            words = words[1:]
        if words[:1] == ["charrnn"]:
            yield words[1:]
        elif words[:1] and words[0] in ("python", "python3", "torchrun"):
            for i in range(1, len(words) - 1):
                if words[i : i + 2] == ["-m", "charrnn"]:
                    yield words[i + 2 :]
                    break


def is_placeholder(value: object) -> bool:
    """RUN_DIR, N, FILE..., $VAR, ...: a value the reader fills in, not one to type-check."""
    return isinstance(value, str) and bool(re.fullmatch(r"[A-Z][A-Z0-9_]*(\.\.\.)?|\.\.\.|.*\$.*", value))


class CommandLineError(Exception):
    """A documented command line that the CLI would refuse."""


def given_values(raw: object) -> list[object]:
    return list(raw) if isinstance(raw, list | tuple) else [raw]


@functools.cache
def cli_command():
    """The click command behind `charrnn`, as `charrnn.cli.main` builds it."""
    return typer.main.get_command(charrnn.cli.app)


def parse_charrnn(args: list[str]) -> None:
    """Parse `charrnn ARGS` as the CLI would, without running anything; CommandLineError if it does not parse.

    Each (sub)command's own parser reads the arguments: an unknown option, an option without its value, an
    unknown subcommand or an argument too many is refused. Every option value given (unless a placeholder
    such as N or RUN_DIR) goes through the option's type conversion. Missing arguments are fine: prose names
    commands without all their arguments. No callback runs (flags are not converted), so `--help`,
    `--version` and `--install-completion` do nothing here.
    """
    command = cli_command()
    name, parent = "charrnn", None
    try:
        while True:
            ctx = command.context_class(command, info_name=name, parent=parent, **(command.context_settings or {}))
            opts, rest, _ = command.make_parser(ctx).parse_args(list(args))
            for param in command.get_params(ctx):
                raw = opts.get(param.name)
                if param.param_type_name != "option" or param.name not in opts or getattr(param, "is_flag", False):
                    continue
                if not any(is_placeholder(value) for value in given_values(raw)):
                    param.handle_parse_result(ctx, {param.name: raw}, [])  # raises on a value of the wrong type
            subcommands = getattr(command, "commands", None)
            if subcommands is None:
                if rest and not getattr(ctx, "allow_extra_args", False):
                    raise CommandLineError(f"{name}: unexpected extra arguments: {' '.join(rest)}")
                return
            if not rest:
                return  # `charrnn --version`, `charrnn seq2seq`
            name, args, parent = rest[0], rest[1:], ctx
            if name not in subcommands:
                raise CommandLineError(f"no command {name!r}; there are: {', '.join(subcommands)}")
            command = subcommands[name]
    except Exception as exc:  # the CLI's usage errors (typer's click) carry format_message(), as in cli.main
        if isinstance(exc, CommandLineError) or not hasattr(exc, "format_message"):
            raise
        raise CommandLineError(" ".join(exc.format_message().split())) from None


def command_lines(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, text, charrnn arguments) of every charrnn command line in a document."""
    blocks, prose = split_markdown(path)
    for block in blocks:
        if block.language in SHELL | CONSOLE:
            for line, command in shell_lines(block):
                for args in charrnn_invocations(command):
                    yield line, command.strip(), args
    for line, span in code_spans(prose):
        if span.startswith("charrnn "):
            span = span.replace("\\|", "|")  # a pipe escaped inside a table cell
            for args in charrnn_invocations(span):
                yield line, span, args


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_charrnn_command_line_parses(path: Path) -> None:
    failures, count = [], 0
    for line, text, args in command_lines(path):
        count += 1
        try:
            parse_charrnn(args)
        except CommandLineError as exc:
            failures.append(f"{path.name}:{line}: {text}\n    {exc}")
    assert not failures, "command lines that do not parse:\n" + "\n".join(failures)
    assert count or path.name not in ("README.md", "usage.md"), "no command lines found: is the scanner broken?"


def test_the_command_checker_catches_mistakes() -> None:
    """The checker fails what the CLI would refuse (so a doc with a wrong flag fails the test above)."""
    parse_charrnn(["train", "my.txt", "--level", "word", "--vocab-size", "N", "--max-time", "5"])
    parse_charrnn(["seq2seq", "translate", "RUN", "Ein Hund.", "--beam", "5", "--show-attention"])
    for wrong in (
        ["train", "--hiden", "64"],  # unknown option
        ["sampel", "RUN"],  # unknown command
        ["seq2seq", "decode", "RUN"],  # unknown subcommand
        ["sample", "RUN", "--length", "many"],  # not a number
        ["info", "RUN", "extra"],  # an argument too many
        ["sample", "RUN", "--seed"],  # an option without its value
    ):
        with pytest.raises(CommandLineError):
            parse_charrnn(wrong)
    found = list(charrnn_invocations("OMP_WAIT_POLICY=PASSIVE charrnn sample $RUN | head -3 > out.txt  # note"))
    assert found == [["sample", "$RUN"]]
    found = list(charrnn_invocations("torchrun --nproc-per-node 4 -m charrnn train books/ --device cuda"))
    assert found == [["train", "books/", "--device", "cuda"]]
    assert list(charrnn_invocations("pip install -e . && charrnn train --max-time 5")) == [
        ["train", "--max-time", "5"]
    ]


# ---------------------------------------------------------------------------------------------------
# Fences, links, length


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_fence_names_a_known_language(path: Path) -> None:
    blocks, _ = split_markdown(path)
    unnamed = [f"{b.where()}: ```{b.language}" for b in blocks if b.language not in SHELL | CONSOLE | OTHER]
    assert not unnamed, "fences without a known language (use ```text for output):\n" + "\n".join(unnamed)


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    _, prose = split_markdown(path)
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", prose, re.M):
        anchors.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    _, prose = split_markdown(path)
    prose = re.sub(r"(?<!`)`[^`]+`(?!`)", "", prose)  # links inside code spans are not links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, f"broken links in {path.name}:\n" + "\n".join(broken)


def test_readme_is_a_front_door() -> None:
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_test_command_is_what_ci_runs() -> None:
    """`.ci/run` installs the test extras and runs `python -m pytest -q`, as the README's second command says."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install torch==2.13.0 -e '.[test]' && python -m pytest -q" in readme
    assert "pip install --quiet torch==2.13.0" in ci and "-e '.[test]'" in ci and "-m pytest -q" in ci


# ---------------------------------------------------------------------------------------------------
# Python blocks


def python_block(path: Path, after: str) -> Block:
    """The first python block of `path` after the heading `after`."""
    heading = next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line == after)
    return next(b for b in split_markdown(path)[0] if b.language == "python" and b.line > heading)


README_API_BLOCK = python_block(REPO_ROOT / "README.md", "## Python API")  # run twice by its own test below
PYTHON_BLOCKS = [
    b
    for path in DOCUMENTS
    for b in split_markdown(path)[0]
    if b.language == "python" and (b.path, b.line) != (README_API_BLOCK.path, README_API_BLOCK.line)
]


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def copy_head(name: str, folder: Path, *, chars: int | None = None, lines: int | None = None) -> None:
    """corpora/NAME cut to its first whole lines (about `chars` characters, or `lines` lines), into folder/NAME."""
    text = (REPO_ROOT / "corpora" / name).read_text(encoding="utf-8")
    if chars is not None:
        text = text[: text.index("\n", chars) + 1]
    if lines is not None:
        text = "".join(text.splitlines(keepends=True)[:lines])
    (folder / name).write_text(text, encoding="utf-8")


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


TINY = {
    "hidden": 32,
    "embed": 16,
    "batch_size": 4,
    "max_steps": 6,
    "threads": 1,
    "warmup_steps": 0,
    "precision": "fp32",
}
TINY_LM = {**TINY, "bptt": 16, "eval_tokens": 2_000}


@pytest.fixture(scope="session")
def examples_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder as the examples expect one: corpora/, names/, trained runs in checkpoints/, an ONNX export."""
    folder = tmp_path_factory.mktemp("docs-examples")
    corpora = folder / "corpora"  # the bundled corpora are found here first, so these small copies are used
    corpora.mkdir()
    copy_head("tinyshakespeare.txt", corpora, chars=40_000)
    copy_head("multi30k-de-en-small.tsv", corpora, lines=400)
    copy_head("multi30k-de-en-small-val.tsv", corpora, lines=50)
    names = folder / "names"  # labelled data, as docs/labelled.md's examples name it
    names.mkdir()
    for labelled in (REPO_ROOT / "tests" / "data" / "names").glob("*.txt"):
        (names / labelled.name).write_bytes(labelled.read_bytes())
    with working_directory(folder):
        charrnn.train("corpora/tinyshakespeare.txt", out="checkpoints/tinyshakespeare-char", **TINY_LM)
        charrnn.train(kind="seq2seq", out="checkpoints/multi30k-de-en-small-luong-general", **TINY)
        if installed("onnx"):
            with pytest.raises(SystemExit) as exited:
                charrnn.cli.main(["export", "checkpoints/tinyshakespeare-char", "--format", "onnx", "--quiet"])
            assert exited.value.code == 0
    return folder


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=Block.where)
def test_python_block_runs(block: Block, examples_folder: Path) -> None:
    for module in ("onnxruntime", "matplotlib"):  # optional extras the examples may use
        if re.search(rf"\b{module}\b", block.text) and not installed(module):
            pytest.skip(f"{module} is not installed (pip install -e '.[test]')")
    with working_directory(examples_folder):
        exec(compile(block.text, block.where(), "exec"), {"__name__": "__main__"})  # noqa: S102 - our own docs


# ---------------------------------------------------------------------------------------------------
# Examples a reader runs again: the README's API example and the ONNX export, twice each, as printed


def run_block(block: Block) -> str:
    """Run a python block in the working directory; what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block.text, block.where(), "exec"), {"__name__": "__main__"})  # noqa: S102 - our own docs
    return printed.getvalue()


def test_readme_api_example_learns_and_runs_twice(tmp_path: Path) -> None:
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    copy_head("tinyshakespeare.txt", corpora, chars=60_000)
    copy_head("multi30k-de-en-small.tsv", corpora, lines=300)
    copy_head("multi30k-de-en-small-val.tsv", corpora, lines=30)
    with working_directory(tmp_path):
        first = run_block(README_API_BLOCK)
        again = run_block(README_API_BLOCK)  # overwrite=True: a second run starts afresh, and repeats the first
        run = charrnn.load("checkpoints/api-demo")
    assert again == first
    lines = first.splitlines()
    steps, loss, reason = lines[0].split()
    assert steps == "120" and reason == "max_steps" and float(loss) < 3.3  # uniform over 65 characters: 4.17
    sample = run.sample(prime="ROMEO:", length=100, temperature=0.8, seed=1)
    assert first.startswith(lines[0] + "\n" + sample + "\n")  # the seeded sample repeats
    right, wrong = (line for line in lines if line.endswith(("To be, or not to be.", "Be to or, not be to.")))
    assert float(right.split()[0]) > float(wrong.split()[0])  # the real line is the more probable
    assert isinstance(charrnn.load(tmp_path / "checkpoints" / "api-seq2seq"), charrnn.TranslationRun)


def test_api_errors_name_keywords_not_flags(tmp_path: Path, examples_folder: Path) -> None:
    with pytest.raises(charrnn.CharRNNError) as raised:
        charrnn.train(examples_folder / "corpora" / "tinyshakespeare.txt", out=tmp_path / "run", max_time=-1)
    assert str(raised.value).startswith("max_time must be a positive number")
    assert raised.value.cli_message.startswith("--max-time must be a positive number")  # what the CLI prints
    with pytest.raises(charrnn.CharRNNError) as raised:
        charrnn.train(
            examples_folder / "corpora" / "tinyshakespeare.txt",
            out=examples_folder / "checkpoints" / "tinyshakespeare-char",
            max_steps=1,
        )
    assert "pass resume=" in str(raised.value) and "or overwrite=True to replace it" in str(raised.value)
    assert "--" not in str(raised.value)
    run = charrnn.load(examples_folder / "checkpoints" / "tinyshakespeare-char")
    with pytest.raises(charrnn.CharRNNError, match="^prime 'ЖЖ' is made only of units"):
        "".join(run.stream(prime="ЖЖ"))


def test_onnx_export_example_runs_twice_as_printed(tmp_path: Path, examples_folder: Path) -> None:
    for module in ("onnx", "onnxruntime"):
        if not installed(module):
            pytest.skip(f"{module} is not installed (pip install -e '.[test]')")
    export_md = REPO_ROOT / "docs" / "export.md"
    shell = [b for b in split_markdown(export_md)[0] if b.language in SHELL]
    commands = [args for b in shell for _, line in shell_lines(b) for args in charrnn_invocations(line)]
    assert commands, "docs/export.md shows no charrnn export command"
    example = python_block(export_md, "## Sampling with onnxruntime only")
    for number, args in enumerate(commands):  # each command shown, on its own, makes what the example opens
        folder = tmp_path / str(number)
        shutil.copytree(examples_folder / "checkpoints", folder / "checkpoints")
        with working_directory(folder):
            for _ in range(2):  # a reader who exports again and reruns the example
                with pytest.raises(SystemExit) as exited:
                    charrnn.cli.main([*args, "--quiet"])
                assert exited.value.code == 0, args
                text = run_block(example)
                assert text.startswith("ROMEO:") and len(text) > 100
