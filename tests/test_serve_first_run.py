"""`charrnn serve` as a first-time user meets it: a busy port, misspelt keys, error words, the favicon."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install 'charrnn[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'charrnn[serve]'")

import charrnn  # noqa: E402
from charrnn.serve.app import create_app  # noqa: E402
from tests.serve_support import call, serving, train_tiny_runs  # noqa: E402
from tests.support import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, shakespeare_head: str):
    lm_dir, s2s_dir = train_tiny_runs(tmp_path_factory.mktemp("serve"), shakespeare_head)
    with serving(create_app({"lm": charrnn.load(lm_dir), "s2s": charrnn.load(s2s_dir)})) as base:
        yield base


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/sample", {"temprature": 0.5}),
        ("/api/score", {"text": "To be.", "bogus": 1}),
        ("/api/activations", {"text": "To be.", "unit": [1]}),
        ("/api/translate", {"run": "s2s", "text": "ein hund", "beams": 2}),
    ],
)
def test_unknown_keys_are_refused_naming_them(url: str, path: str, body: dict) -> None:
    status, answer = call(url + path, body)
    [unknown] = set(body) - {"run", "text"}
    assert status == 400 and f'Unknown key(s) "{unknown}" for {path}' in answer["error"]


def test_errors_name_json_keys_not_command_line_flags(url: str) -> None:
    status, answer = call(url + "/api/sample", {"prime": "€€"})
    assert status == 400 and answer["error"].startswith("prime '€€' is made only of units the model never saw")
    status, answer = call(url + "/api/sample", {"prime": "€€", "stream": True})  # checked before streaming
    assert status == 400 and "--" not in answer["error"] and answer["error"].startswith("prime ")


def test_info_has_one_epochs_figure_and_the_page_has_a_favicon(url: str) -> None:
    status, info = call(url + "/api/info")
    assert status == 200 and "epochs" in info and "epoch" not in info
    with urllib.request.urlopen(url + "/favicon.ico") as icon:
        assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
        assert icon.read().startswith(b"<svg")


def test_a_busy_port_is_one_error_line_before_serving(trained_run: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(["serve", str(trained_run), "--port", str(port)])
    assert result.code == 1 and "Serving" not in result.stderr
    assert result.stderr.startswith(f"charrnn: error: Cannot listen on 127.0.0.1:{port} (Address already in use)")
    assert len(result.stderr.strip().splitlines()) == 1
