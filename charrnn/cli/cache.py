"""`charrnn cache list|clear`: what the user cache folder holds (token caches, stdin copies, precision
decisions), and freeing it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from charrnn.cli.display import err_console, out_console

cache_app = typer.Typer(
    no_args_is_help=True,
    help="The user cache folder ($CHARRNN_CACHE, else $XDG_CACHE_HOME/charrnn, else ~/.cache/charrnn): "
    "token caches, stdin copies and --precision auto decisions. Everything in it is rebuilt when needed.",
)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size >= 100_000 else f"{size / 1e3:,.1f} kB"


def _describe(path: Path) -> str:
    """What a token cache covers (its files, or its labelled examples, and level), from its header."""
    try:
        header = json.loads((path / "header.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "incomplete (being built, or interrupted)"
    if path.name.startswith("examples-"):  # labelled examples (`charrnn.core.token_cache.cached_examples`)
        origin = Path(str(header.get("origin") or "?")).name
        count = header.get("examples")
        shown = f"{count:,}" if isinstance(count, int) else "?"
        return f"{header.get('level', '?')} ids of {shown} labelled examples of {origin}"
    files = [Path(f["path"] if isinstance(f, dict) else f).name for f in header.get("files", [])]
    shown = (files[0] + (f" +{len(files) - 1} files" if len(files) > 1 else "")) if files else "?"
    what = "ids" if path.name.startswith("tokens-") else "vocabulary"
    return f"{header.get('level', '?')} {what} of {shown}"


@cache_app.command("list")
def list_cache(as_json: bool = typer.Option(False, "--json", help="Print a JSON array for scripts.")) -> None:
    """List what the user cache folder holds, with sizes and when each was last written."""
    from charrnn.core.user_cache import PARTS, cache_home, entries

    found = entries()
    if as_json:
        rows = [
            {"path": str(e.path), "part": e.part, "bytes": e.size, "modified": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e.modified))}
            for e in found
        ]  # fmt: skip
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    if not found:
        err_console().print(f"the charrnn cache {cache_home()} is empty", highlight=False)
        return
    total = sum(e.size for e in found)
    table = Table(title=f"{cache_home()}: {_megabytes(total)}", title_justify="left", box=None)
    table.add_column("entry", no_wrap=True)
    table.add_column("holds")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("written (UTC)", no_wrap=True)
    for entry in found:
        holds = _describe(entry.path) if entry.part == "tokens" else PARTS[entry.part]
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(entry.modified))
        short = (
            entry.name[: entry.name.find("-") + 9] if "-" in entry.name else entry.name
        )  # kind and 8 hex digits
        table.add_row(short, holds, _megabytes(entry.size), when)
    out_console().print(table)


@cache_app.command("clear")
def clear_cache() -> None:
    """Delete everything in the user cache folder (runs trained on stdin then cannot be resumed)."""
    from charrnn.core.user_cache import cache_home, clear

    count, size = clear()
    err_console().print(f"freed {_megabytes(size)} ({count} entries) in {cache_home()}", highlight=False)
