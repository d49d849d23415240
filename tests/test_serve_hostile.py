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
        status, raw = post(url, "/api/sample", {"prime": "e", "length": 5, "seed": 1, **settings})
        assert status == 200 and json.loads(raw)["text"].startswith("e"), raw


# --- item 16: the page answers only to itself ----------------------------------------------------------------


def test_a_foreign_host_header_is_refused(url: str) -> None:
    """Item 16 (DNS rebinding): a page of evil.example that rebinds its name to 127.0.0.1 sends
    `Host: evil.example`: refused, for the API and the page alike; the server's own names are answered."""
    port = url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example", ""):
        for method, path, body in (("GET", "/api/info", None), ("GET", "/", None), ("POST", "/api/score", b"{}")):
            status, raw, _ = request(url, method, path, body, {"Host": host})
            assert status == 400 and b"is not a name this server answers to" in raw, (host, path, raw)
            assert b"corpus" not in raw
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST.", f"[::1]:{port}", "192.168.1.20:80"):
        assert request(url, "GET", "/api/info", None, {"Host": host})[0] == 200, host


def test_a_foreign_origin_or_a_post_that_is_not_json_is_refused(url: str) -> None:
    """Item 16: another site's page cannot make the browser post here (Origin), nor post a 'simple' request
    that needs no preflight (text/plain, form encodings); the page's own requests are answered."""
    host = url.removeprefix("http://")
    body = json.dumps({"text": "to be"}).encode()
    for origin in (
        "http://evil.example",
        f"http://evil.example:{host.split(':')[1]}",
        "null",
        f"https://x.{host}",
    ):
        status, raw, _ = request(url, "POST", "/api/score", body, {"Origin": origin})
        assert status == 403 and b"another site" in raw, (origin, raw)
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""):
        status, raw, _ = request(url, "POST", "/api/score", body, {"Content-Type": kind})
        assert status == 415 and b"Content-Type: application/json" in raw, (kind, raw)
    assert request(url, "POST", "/api/score", body, {"Origin": url})[0] == 200
    assert request(url, "POST", "/api/score", body, {"Content-Type": "application/json; charset=utf-8"})[0] == 200
    assert request(url, "POST", "/api/score", body)[0] == 200  # no Origin: curl, scripts


def test_allowed_hosts_follow_the_address_the_server_was_started_for() -> None:
    """Item 16: loopback names always; the --host name; the machine's names when the page is exposed."""
    import socket

    from charrnn.serve.guard import allowed_hosts, host_name, is_loopback

    assert allowed_hosts() == {"localhost", "127.0.0.1", "::1"}
    assert "box.lan" in allowed_hosts("box.lan") and "proxy.example" in allowed_hosts(extra=["Proxy.Example."])
    assert socket.gethostname().lower() in allowed_hosts("0.0.0.0")
    assert host_name("Example.COM.:8000") == "example.com" and host_name("[::1]:80") == "::1"
    assert is_loopback("127.0.0.2") and is_loopback("localhost") and not is_loopback("0.0.0.0")


# --- item 17: slow clients, exposure, one generation per server ----------------------------------------------


def test_slow_clients_are_disconnected(lm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 17: connections that never finish their headers (at once, or on a kept-alive connection after an
    answer) are closed after the header deadline; a normal client is still answered meanwhile."""
    import socket
    import time

    from charrnn.serve import guard

    monkeypatch.setattr(guard, "HEADER_SECONDS", 0.6)
    with serving(create_app({"lm": lm})) as base:
        host, port = base.removeprefix("http://").split(":")
        slow = []
        for _ in range(50):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127")  # and never the rest
            slow.append(sock)
        kept = socket.create_connection((host, int(port)), timeout=10)
        kept.sendall(f"GET /static/style.css HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        assert kept.recv(65536).startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET / HTTP/1.1\r\nHo")  # a second request that never completes
        slow.append(kept)
        status, raw, _ = request(base, "GET", "/api/info")
        assert status == 200
        started = time.monotonic()
        for sock in slow:
            while sock.recv(65536):  # drain whatever came before the close
                pass
            sock.close()
        assert time.monotonic() - started < 5  # closed by the server (recv would time out after 10 s)


def test_exposing_the_page_beyond_the_machine_warns(lm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 17: `--host 0.0.0.0` says the page is reachable from other machines; 127.0.0.1 says nothing."""
    import uvicorn

    from tests.support import run_cli

    configs = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: configs.append(self.config))
    exposed = run_cli(["serve", str(lm.run_dir), "--host", "0.0.0.0", "--port", "8765"])
    assert exposed.code == 0 and "reachable from other machines" in exposed.stderr, exposed
    local = run_cli(["serve", str(lm.run_dir), "--port", "8765"])
    assert local.code == 0 and "reachable" not in local.stderr
    assert configs[-1].timeout_keep_alive <= 5 and configs[-1].limit_concurrency is not None


# --- item 18: nesting --------------------------------------------------------------------------------------------


def test_a_deeply_nested_body_is_a_400(url: str) -> None:
    """Item 18: a body nested deeper than the API needs (3 levels, for pairs) is refused, never a 500."""
    for raw in (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b'{"text": [[[["x"]]]]}'):
        status, answer, _ = request(url, "POST", "/api/score", raw)
        assert status == 400 and b"nested deeper" in answer, answer[:200]
    status, _, _ = request(url, "POST", "/api/score", json.dumps({"sentences": ["to be"], "run": "lm"}).encode())
    assert status == 200
