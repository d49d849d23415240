"""Helpers for the web-page tests: tiny LM, seq2seq and labelled runs, and a real uvicorn server on a free port."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import charrnn


def train_tiny_runs(root: Path, corpus_text: str) -> tuple[Path, Path]:
    """A 2-layer char LSTM and a word-level seq2seq with attention, a few steps each."""
    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text, encoding="utf-8")
    lm = charrnn.train(
        corpus, out=root / "lm", max_steps=10, hidden=16, embed=8, layers=2, batch_size=4, bptt=16, threads=1,
        warmup_steps=0,  # ten steps at the full rate: the page's colours need probabilities that differ
    )  # fmt: skip
    pairs = root / "pairs.tsv"
    pairs.write_text("".join(f"ein hund {i}\ta dog {i}\n" for i in range(40)), encoding="utf-8")
    seq2seq = charrnn.train(
        pairs, kind="seq2seq", out=root / "s2s", max_steps=10, batch_size=16, hidden=16, embed=8, threads=1,
        attention="bahdanau",
    )  # fmt: skip
    return lm.run_dir, seq2seq.run_dir


NAMES = Path(__file__).resolve().parent / "data" / "names"
TINY_LABELLED = {
    "embed": 8,
    "hidden": 12,
    "layers": 1,
    "batch_size": 8,
    "threads": 1,
    "device": "cpu",
    "eval_every": 5,
}


def train_labelled_runs(root: Path) -> tuple[Path, Path]:
    """A tiny classifier and a tiny conditional language model on the test names, a few steps each."""
    charrnn.train(NAMES, task="classify", out=root / "classifier", max_steps=10, **TINY_LABELLED)
    charrnn.train(NAMES, condition="label", out=root / "conditional", max_steps=6, **TINY_LABELLED)
    return root / "classifier", root / "conditional"


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 at a free port in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    from charrnn.serve.guard import server_config

    server = uvicorn.Server(server_config(app, log_level="error"))  # as `charrnn serve` configures it
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def call(url: str, body: Any = None, raw: bytes | None = None, method: str | None = None) -> tuple[int, Any]:
    """(status, decoded JSON) of a GET (no body) or a POST of `body` as JSON (or of `raw` bytes)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def events(url: str, body: Any) -> list[tuple[str | None, dict]]:
    """The server-sent events of a streamed POST, as (event name, data) pairs."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = response.read().decode()
    parsed = []
    for block in text.strip().split("\n\n"):
        name = None
        data: dict = {}
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
        parsed.append((name, data))
    return parsed
