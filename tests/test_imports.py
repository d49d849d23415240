"""The import graph: `import charrnn` and the CLI's start load no torch, core imports nothing above it, no cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import charrnn
from tests.support import REPO_ROOT, subprocess_env

PACKAGE = REPO_ROOT / "charrnn"


def python(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter that imports this checkout."""
    return subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("module", ["charrnn", "charrnn.cli"])
def test_importing_loads_no_torch(module: str) -> None:
    done = python(f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_run_without_torch(flag: str) -> None:
    """Neither loads torch; --version (answered before the commands are built) loads no typer either: fast."""
    done = python(
        "import sys\n"
        "from charrnn.cli import main\n"
        f"try:\n    main([{flag!r}])\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print(code, *sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'typer'}), file=sys.stderr)\n"
    )
    assert done.returncode == 0, done.stderr
    if flag == "--help":
        assert done.stderr.strip() == "0 typer" and "Usage: charrnn" in done.stdout
    else:
        assert done.stderr.strip() == "0" and done.stdout == f"charrnn {charrnn.__version__}\n"


def test_the_public_names_load_on_first_use() -> None:
    from charrnn import TranslationRun, load
    from charrnn.api import load as api_load
    from charrnn.seq2seq.run import TranslationRun as own

    assert load is api_load and TranslationRun is own
    assert all(hasattr(charrnn, name) for name in charrnn.__all__) and set(charrnn.__all__) <= set(dir(charrnn))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        charrnn.nonexistent  # noqa: B018


def test_version_is_pyprojects() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert charrnn.__version__ == project["version"]


def imports_of(path: Path) -> set[str]:
    """Every charrnn module `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            submodules = {n for n in names if (PACKAGE / (n.replace(".", "/")[8:] + ".py")).is_file()}
            found |= submodules if len(submodules) == len(names) else {*submodules, node.module}
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "charrnn" or m.startswith("charrnn.")}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_core_imports_nothing_above_it() -> None:
    for path in sorted((PACKAGE / "core").glob("*.py")):
        above = {m for m in imports_of(path) if not m.startswith("charrnn.core")}
        assert not above, f"{module_name(path)} imports {sorted(above)}"


# The layers, lowest first: a module may import its own layer and those below it. Model packages of one
# layer never import each other; labelled text and the lessons build on the language model.
LAYERS = {
    "core": 0, "lm": 1, "seq2seq": 1, "labelled": 2, "lessons": 2, "kinds": 3, "api": 4, "lesson_runs": 4,
    "serve": 5, "cli": 6,
}  # fmt: skip
MODEL_PACKAGES = {"lm", "seq2seq", "labelled", "lessons"}


def layer_of(module: str) -> str:
    """The layer name of a charrnn module: its subpackage or top-level module (the front door is on top)."""
    parts = module.split(".")
    return "front door" if len(parts) == 1 or parts[1] == "__main__" else parts[1]


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer() -> None:
    unknown = {layer_of(m) for m in package_modules()} - set(LAYERS) - {"front door"}
    assert not unknown, f"place {sorted(unknown)} in LAYERS"


def test_no_module_imports_a_layer_above_it_or_another_model_package() -> None:
    for name, path in package_modules().items():
        own = layer_of(name)
        if own == "front door":
            continue
        for target in imports_of(path):
            other = layer_of(target)
            assert other != "front door", f"{name} imports the package front door; import the module itself"
            assert LAYERS[other] <= LAYERS[own], f"{name} imports {target}, a layer above it"
            if own in MODEL_PACKAGES and other in MODEL_PACKAGES and LAYERS[own] == LAYERS[other]:
                assert other == own, f"{name} imports {target}: model packages share only core"


def test_the_package_has_no_import_cycle() -> None:
    modules = package_modules()
    edges = {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name not in done:
            for target in edges[name]:
                visit(target, (*path, name))
            done.add(name)

    for name in edges:
        visit(name, ())
