"""The web page against hostile clients (issue 21): lone surrogates, foreign Host and Origin headers,
non-JSON bodies, slow clients, one generation per server, deeply nested bodies."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install 'charrnn[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'charrnn[serve]'")

import charrnn  # noqa: E402
from charrnn.serve.app import create_app  # noqa: E402
from charrnn.serve.params import Limits  # noqa: E402
from tests.serve_support import serving  # noqa: E402
from tests.support import TINY_LM, write_corpus  # noqa: E402


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("serve-hostile")
    result = charrnn.train(write_corpus(root, chars=1500), out=root / "lm", max_steps=2, **TINY_LM)
    return charrnn.load(result.run_dir)


@pytest.fixture(scope="module")
def url(lm: Any):
    with serving(create_app({"lm": lm}, Limits(max_length=50, max_text=500))) as base:
        yield base


def request(
    url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) of one raw HTTP request: every header as given (Host included)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    given = {"Content-Type": "application/json", **(headers or {})}
    try:
        connection.putrequest(method, path, skip_host="Host" in given, skip_accept_encoding=True)
        for name, value in given.items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def post(url: str, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    status, raw, _ = request(url, "POST", path, json.dumps(body).encode(), headers)
    return status, raw


# --- item 10: lone surrogates ------------------------------------------------------------------------------------


def test_lone_surrogates_in_a_score_text_or_a_streamed_prime_are_answered(url: str) -> None:
    """Item 10: '\\ud800' in a request's text is scored or sampled, and the answer is valid UTF-8 JSON."""
    status, raw = post(url, "/api/score", {"text": "to be \ud800 or not"})
    assert status == 200, raw
    assert json.loads(raw.decode("utf-8"))["sentences"][0]["sentence"] == "to be \ud800 or not"
    status, raw = post(url, "/api/sample", {"prime": "a\ud800", "length": 5, "stream": True, "seed": 1})
    assert status == 200, raw
    text = raw.decode("utf-8")
    assert "event: done" in text and "event: error" not in text, text


def test_a_tiny_temperature_or_top_p_samples_instead_of_a_500(url: str) -> None:
    """Item 11: temperature 1e-300 and top_p 5e-324 pass the API's checks and sample (NaN before)."""
    for settings in ({"temperature": 1e-300}, {"top_p": 5e-324}):
        status, raw = post(url, "/api/sample", {"prime": "T", "length": 5, "seed": 1, **settings})
        assert status == 200 and json.loads(raw)["text"].startswith("T"), raw
