"""`charrnn serve RUN...`: the local web page and JSON API (needs the `charrnn[serve]` extra)."""

from __future__ import annotations

import errno
from pathlib import Path

import typer

from charrnn.cli.display import err_console
from charrnn.core.errors import CharRNNError

INSTALL_HINT = "charrnn serve needs Starlette and uvicorn: pip install 'charrnn[serve]'."


def register(app: typer.Typer) -> None:
    """Add `serve` to `app`."""
    app.command()(serve)


def check_port(host: str, port: int) -> None:
    """Refuse, in one line, an address this process cannot listen on (a port in use, a host not of this machine)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CharRNNError(f"--host {host}: {exc.strerror}; give an address of this machine.") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a port in TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as exc:
            hint = "; another program uses it: pass --port" if exc.errno == errno.EADDRINUSE else ""
            raise CharRNNError(f"Cannot listen on {host}:{port} ({exc.strerror}){hint}.") from None


def serve(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories to serve (any kind but lessons)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; 0.0.0.0 exposes the page to your network."),
    port: int = typer.Option(8000, help="Port to listen on."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
    max_length: int = typer.Option(2000, help="Most tokens one generation may draw."),
    max_text: int = typer.Option(4000, help="Most characters in one text sent to the model."),
    allow_host: list[str] | None = typer.Option(
        None, "--allow-host", help="Another name the page may be reached by (a proxy's); repeatable."
    ),
) -> None:
    """Serve a local web page to generate, score, look inside, translate and classify with trained runs."""
    try:
        import uvicorn  # noqa: F401

        from charrnn.serve import guard
        from charrnn.serve.app import create_app, run_names
        from charrnn.serve.params import Limits
    except ImportError:
        raise CharRNNError(INSTALL_HINT) from None

    from charrnn import kinds

    if not 1 <= port <= 65535:
        raise CharRNNError(f"--port must be between 1 and 65535, got {port}.")
    if max_length < 1 or max_text < 1:
        raise CharRNNError("--max-length and --max-text must be at least 1.")
    runs = {}
    for name, run_dir in zip(run_names(run_dirs), run_dirs, strict=True):
        spec = kinds.kind_of_run(run_dir)
        if not spec.served:
            raise CharRNNError(
                f"{run_dir} holds a {spec.run_title} run, which the web page does not show; {spec.commands}."
            )
        run = kinds.load(run_dir, device)
        if run.note:
            err_console().print(f"note: {run_dir}: {run.note}", style="yellow")
        runs[name] = run
    app = create_app(
        runs, Limits(max_length=max_length, max_text=max_text), guard.allowed_hosts(host, allow_host or ())
    )
    check_port(host, port)  # before "Serving": a busy port is one line, not uvicorn's log and exit 3
    err_console().print(f"Serving {', '.join(runs)} at http://{host}:{port}/ (Ctrl-C to stop)", highlight=False)
    if not guard.is_loopback(host):
        err_console().print(
            f"warning: --host {host} makes the page reachable from other machines; anyone who reaches it can "
            "use these models (there is no login). Use --host 127.0.0.1 to keep it on this machine.",
            style="yellow",
        )
    # uvicorn's server (>= 0.29) shuts down cleanly on a signal and then raises it again: SIGTERM ends
    # the process as SIGTERM does (143), Ctrl-C arrives here as KeyboardInterrupt (`uvicorn.run` would
    # swallow it and exit 0).
    server = uvicorn.Server(guard.server_config(app, host=host, port=port))
    try:
        server.run()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
