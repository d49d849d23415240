"""`charrnn prepare`: tokenize a corpus into its token cache ahead of training, with progress and throughput."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from charrnn.cli.display import err_console, out_console
from charrnn.cli.options import add_config_command, corpus_argument, parameter

PREPARE_OPTIONS = ("encoding", "errors", "glob", "cache_dir", "val_corpus", "max_bytes")


def register(app: typer.Typer) -> None:
    """Add `charrnn prepare` to `app`, with the tokenizer and corpus flags of `charrnn train`."""
    from charrnn import kinds

    specs = {
        name: spec
        for name, spec in kinds.model_kind("lm").options().items()
        if name in PREPARE_OPTIONS or all(p.startswith("tokenizer.") for p in spec.paths)
    }
    corpus = typer.Argument(
        ...,
        help="Text file(s) or folder(s) (their *.txt files; see --glob), or - for stdin.",
        parser=corpus_argument,
    )
    add_config_command(
        app,
        "prepare",
        specs,
        [
            parameter("corpus", list[Path], corpus),
            parameter(
                "verify",
                bool,
                typer.Option(
                    False, "--verify", help="Re-hash every corpus file against the cache; rebuild what changed."
                ),
            ),
        ],
        lambda arguments, given: prepare(arguments["corpus"], given, arguments["verify"]),
        "Tokenize CORPUS into the token cache `charrnn train` reads (built once, reused by later runs).",
    )


def prepare(corpus: list[Path], options: dict[str, Any], verify: bool = False) -> None:
    """Build or find the token cache of `corpus`; progress on stderr, a summary table on stdout."""
    from charrnn import api
    from charrnn.lm.training import prepare_corpus

    config, _ = api.effective_config(corpus, kind="lm", **options)
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    started = time.perf_counter()
    with Progress(*columns, console=err_console(), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        def note(text: str) -> None:
            bar.console.print(f"note: {text}", style="yellow")

        prepared = prepare_corpus(config, progress, note, verify)
    seconds = time.perf_counter() - started
    table = Table(title="token cache", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    for part, token_file in (("corpus", prepared.corpus), ("validation", prepared.val)):
        if token_file is None:
            continue
        header = token_file.header
        table.add_row(f"{part} files", f"{len(header['files']):,}")
        table.add_row(f"{part} text", f"{header['bytes'] / 1e6:,.1f} MB")
        table.add_row(f"{part} tokens", f"{token_file.n_tokens:,} ({header['dtype'][1:]})")
        table.add_row(f"{part} cache", f"{token_file.size_bytes / 1e6:,.1f} MB in {token_file.folder}")
        if token_file.reused:
            table.add_row(f"{part} tokenize", "already cached")
        else:
            speed = header["bytes"] / 1e6 / max(header["seconds"], 1e-9)
            table.add_row(f"{part} tokenize", f"{header['seconds']:.2f} s, {speed:,.1f} MB/s")
    table.add_row("level", f"{prepared.tokenizer.level}, {prepared.tokenizer.vocab_size:,} entries")
    table.add_row("total time", f"{seconds:.2f} s")
    out_console().print(table)
