"""Options declared once: a config dataclass field carries its default, help text and resume rule.

Every user-settable setting is a field of a config dataclass declared with `option(...)`. The CLI
builds its flags from those fields, `charrnn.train(**options)` accepts the same names, a TOML file
(`--config`) sets the same fields by section, and config.json stores them. So a default or a help
text is written in exactly one place.

Inside charrnn an explicit setting is a *dotted path* ("training.max_steps",
"source_tokenizer.level") mapped to a value; `OptionSpec` maps the flat public name (`max_steps`,
`level`) onto one or more paths.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from charrnn.core import safeio
from charrnn.core.errors import CharRNNError

T = TypeVar("T")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002 - the natural name for a help text
    *,
    factory: Any = dataclasses.MISSING,
    resumable: bool = False,
    flag: str | None = None,
    cli: bool = True,
    derived: bool = False,
    path: bool = False,
) -> Any:
    """A dataclass field that is also a user option.

    resumable: may change when a run is resumed (stopping rules, learning rate, cadence, device).
    flag: the CLI flag(s) when not `--field-name` (e.g. "--bidirectional/--unidirectional").
    cli: offered as a CLI flag (False: TOML and Python only, e.g. lists).
    derived: filled in by charrnn (e.g. the vocabulary size), never set by the user.
    path: names a file; stored absolute, so that --resume works from any directory.
    """
    metadata = {"help": help, "resumable": resumable, "flag": flag, "cli": cli, "derived": derived, "path": path}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_info(cls: type, name: str) -> dict[str, Any]:
    """The `option(...)` metadata of field `name` of dataclass `cls` (empty for plain fields)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return dict(f.metadata)
    raise KeyError(name)


# -- strict construction from JSON/TOML data ------------------------------------------------------


def _type_name(kind: Any) -> str:
    if kind is type(None):
        return "none"
    return {bool: "true/false", int: "a whole number", float: "a number", str: "a string"}.get(kind, str(kind))


def _shown(value: Any) -> str:
    """A value for an error message, cut short (a file may hold anything)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(where: str, value: Any, annotation: Any) -> Any:
    """`value` checked against a field type (int, float, bool, str, X | None, list[int]); floats accept ints."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        if len(inner) == 1:
            return check_value(where, value, inner[0])
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise CharRNNError(f"{where} must be a list, got {_shown(value)}.")
        return [check_value(f"{where}[{i}]", v, item) for i, v in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > 2**62:
                raise CharRNNError(f"{where} = {value} is out of range.")
            return value
    elif annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    else:
        return value
    expected = _type_name(annotation)
    if typing.get_origin(annotation) is None and value is None:
        expected += " (it cannot be empty)"
    raise CharRNNError(f"{where} must be {expected}, got {_shown(value)}.")


def dataclass_from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass `cls` from `data`, with one-line errors for unknown keys and wrong types."""
    label = where or cls.__name__
    if not isinstance(data, dict):
        raise CharRNNError(f"{label} must be a table of settings, got {_shown(data)}.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise CharRNNError(
            f"Unknown setting {prefix}{unknown[0]}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f"; known: {', '.join(sorted(known))}."
        )
    values = {}
    for name, value in data.items():
        path = f"{where}.{name}" if where else name
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            values[name] = dataclass_from_dict(annotation, value, path)
        else:
            values[name] = check_value(path, value, annotation)
    return cls(**values)


# -- flat option names over a run config ----------------------------------------------------------


@dataclass
class OptionSpec:
    """One user option: its flat name, the config paths it sets, its type, default and help."""

    name: str  # flat name: the keyword of charrnn.train and, with dashes, the CLI flag
    paths: list[str]  # dotted config paths it sets (two for a seq2seq tokenizer option)
    annotation: Any
    default: Any
    help: str
    resumable: bool
    flag: str | None
    cli: bool
    path: bool = False

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def _sections(config: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(config))
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if dataclasses.is_dataclass(hints[f.name])
    }


def option_specs(config: Any, side_options: tuple[str, ...] = ()) -> dict[str, OptionSpec]:
    """Every user option of a run config (an instance holding the defaults), by flat name.

    Sections whose names end in `_tokenizer` (seq2seq's source and target) share one flat name per
    field (`level` sets both sides); `side_options` also get `source_level`, `target_level`, ...
    Top-level fields declared with `option(...)` keep their own name.
    """
    specs: dict[str, OptionSpec] = {}
    hints_top = typing.get_type_hints(type(config))

    def add(name: str, path: str, cls: type, field: dataclasses.Field, value: Any) -> None:
        meta = field.metadata
        annotation = typing.get_type_hints(cls)[field.name]
        if name in specs:
            spec = specs[name]
            if spec.default != value:
                raise AssertionError(f"option {name} has two defaults: {spec.default!r} and {value!r}")
            spec.paths.append(path)
            return
        specs[name] = OptionSpec(
            name, [path], annotation, value, meta.get("help", ""), meta.get("resumable", False),
            meta.get("flag"), meta.get("cli", True), meta.get("path", False),
        )  # fmt: skip

    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(hints_top[f.name]):
            sided = f.name.endswith("_tokenizer")
            for inner in dataclasses.fields(value):
                if inner.metadata.get("derived") or not inner.metadata.get("help"):
                    continue
                inner_value = getattr(value, inner.name)
                add(inner.name, f"{f.name}.{inner.name}", type(value), inner, inner_value)
                if sided and inner.name in side_options:
                    side = f.name.removesuffix("_tokenizer")
                    side_spec = OptionSpec(
                        f"{side}_{inner.name}", [f"{f.name}.{inner.name}"],
                        typing.get_type_hints(type(value))[inner.name] | None, None,
                        f"{inner.metadata['help']} For the {side} side only (default: as --{inner.name.replace('_', '-')}).",
                        inner.metadata.get("resumable", False), None, True,
                    )  # fmt: skip
                    specs[side_spec.name] = side_spec
        elif f.metadata.get("help") and not f.metadata.get("derived"):
            add(f.name, f.name, type(config), f, value)
    return specs


def get_path(config: Any, path: str) -> Any:
    """The value at a dotted path of a config."""
    for part in path.split("."):
        config = getattr(config, part)
    return config


def set_path(config: Any, path: str, value: Any) -> None:
    """Set the value at a dotted path of a config."""
    *parents, last = path.split(".")
    for part in parents:
        config = getattr(config, part)
    setattr(config, last, value)


def path_info(config: Any, path: str) -> tuple[Any, dict[str, Any]]:
    """(type annotation, option metadata) of the field at a dotted path."""
    *parents, last = path.split(".")
    owner = config
    for part in parents:
        owner = getattr(owner, part)
    return typing.get_type_hints(type(owner))[last], field_info(type(owner), last)


def flat_to_paths(specs: dict[str, OptionSpec], options: dict[str, Any]) -> dict[str, Any]:
    """Flat options (`max_steps=...`) as dotted paths; side-specific options win over shared ones."""
    paths: dict[str, Any] = {}
    for name in sorted(options, key=lambda n: n.startswith(("source_", "target_"))):
        if name not in specs:
            close = [n for n in specs if n.startswith(name[:3])][:6]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise CharRNNError(f"Unknown option {name!r}{hint}.")
        spec = specs[name]
        value = options[name]
        if value is None and spec.default is None and name.startswith(("source_", "target_")):
            continue
        if spec.path and value is not None:
            value = absolute(value)
        for path in spec.paths:
            paths[path] = check_value(spec.cli_flag, value, spec.annotation)
    return paths


def absolute(path: Any, base: Any = None) -> Any:
    """A file path (or a list of them) made absolute, relative ones read from `base` (default: the working
    directory), so that a run can be resumed from any directory; symlinks kept as the user named them."""
    import os

    if isinstance(path, list | tuple):
        return [absolute(p, base) for p in path]
    return os.path.abspath(os.path.join(base, path) if base is not None else path)


# -- TOML -----------------------------------------------------------------------------------------


def read_toml(path: Any) -> dict[str, Any]:
    """A TOML file as nested dicts, with a one-line error when it is missing or malformed."""
    from pathlib import Path

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    if not path.is_file():
        raise CharRNNError(f"--config {path}: no such file.")
    try:
        return tomllib.loads(safeio.read_regular(path, MAX_TOML_BYTES, "config file").decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CharRNNError(f"--config {path} is not valid TOML: {exc}.") from None
    except RecursionError:
        raise CharRNNError(f"--config {path} is nested too deeply to be a charrnn config.") from None


MAX_TOML_BYTES = 16 << 20  # a config file is a few hundred bytes


NONE = "none"  # TOML has no null: an unset optional setting is written as the string "none"


def toml_to_paths(config: Any, data: dict[str, Any], source: str, base: Any = None) -> dict[str, Any]:
    """Settings of a TOML file as dotted paths, checked against the fields of `config`.

    Relative file paths in it are read from `base`, the folder of the file, as other tools read their
    config files (`corpus = "data/alice.txt"` beside run.toml works from any working directory).
    """
    paths: dict[str, Any] = {}
    sections = _sections(config)
    for key, value in data.items():
        if key in sections:
            if not isinstance(value, dict):
                raise CharRNNError(f"{source}: [{key}] must be a table of settings.")
            for name, inner in value.items():
                paths[_checked(config, f"{key}.{name}", inner, source)] = inner
        else:
            paths[_checked(config, key, value, source)] = value
    typed = {p: _typed(config, p, v, source) for p, v in paths.items()}
    for p, v in typed.items():
        if v == "" and path_info(config, p)[1].get("path"):
            raise CharRNNError(f"{source}: {p} is an empty path; give a file or folder, or leave the setting out.")
    return {
        p: absolute(v, base) if v is not None and path_info(config, p)[1].get("path") else v
        for p, v in typed.items()
    }


def _checked(config: Any, path: str, value: Any, source: str) -> str:
    try:
        _, meta = path_info(config, path)
    except (AttributeError, KeyError):
        raise CharRNNError(f"{source}: unknown setting {path}.") from None
    if not meta.get("help") or meta.get("derived"):
        raise CharRNNError(f"{source}: {path} is set by charrnn itself, not by a config file; remove it.")
    return path


def _typed(config: Any, path: str, value: Any, source: str) -> Any:
    annotation, _ = path_info(config, path)
    optional = type(None) in typing.get_args(annotation)
    if optional and value == NONE:
        return None
    return check_value(f"{source}: {path}", value, annotation)


def _toml_value(value: Any) -> str:
    if value is None:
        return f'"{NONE}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            repr(value)
            if math.isfinite(value)
            else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def to_toml(config: Any) -> str:
    """The user-settable fields of a run config as TOML, one section per config part, with help comments."""
    lines: list[str] = []
    top, sections = [], _sections(config)
    for f in dataclasses.fields(config):
        if f.name not in sections and f.metadata.get("help") and not f.metadata.get("derived"):
            top.append((f, getattr(config, f.name)))
    for f, value in top:
        lines += [f"# {f.metadata['help']}", f"{f.name} = {_toml_value(value)}"]
    for name, section in sections.items():
        lines += ["", f"[{name}]"]
        for f in dataclasses.fields(section):
            if not f.metadata.get("help") or f.metadata.get("derived"):
                continue
            lines += [f"# {f.metadata['help']}", f"{f.name} = {_toml_value(getattr(section, f.name))}"]
    return "\n".join(lines) + "\n"
