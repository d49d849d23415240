"""`charrnn export`: write a trained language model in a format other runtimes load (ONNX)."""

from __future__ import annotations

from pathlib import Path

import typer

from charrnn.cli.display import err_console, load_run
from charrnn.core.errors import CharRNNError


def register(app: typer.Typer) -> None:
    """Add the export command to `app`."""
    app.command()(export)


def export(
    run_dir: Path = typer.Argument(..., help="Language-model run directory written by `charrnn train`."),
    fmt: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Sequence model file (default: <run name>.onnx)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not list the files written."),
) -> None:
    """Export a language model to ONNX: a sequence model, a single-step model and a JSON tokenizer sidecar."""
    from charrnn.lm.export import export_onnx

    if fmt != "onnx":
        raise CharRNNError(f"--format must be onnx, got {fmt!r}.")
    run = load_run(run_dir, "cpu", None, "lm")
    written = export_onnx(run, out if out is not None else Path(f"{Path(run_dir).resolve().name}.onnx"))
    if not quiet:
        for path in written:
            err_console().print(f"wrote {path}", highlight=False)
