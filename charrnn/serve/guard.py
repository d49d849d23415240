"""What keeps the web page answering only to itself: the Host and Origin rules, JSON-only POSTs, slow clients.

- **Host.** A request is answered only when its Host header names this server: `localhost`, an IP
  address (a browser tricked by DNS rebinding sends the attacker's *name*, never an address), the
  name given to `--host`, this machine's own names when `--host` exposes the page to the network,
  and any name given to `--allow-host`. Anything else is 400.
- **Origin.** A POST that carries an `Origin` header is run only when that origin is this page
  (`http://` + the Host it was sent to): another site's page cannot make the browser post to it.
  A POST must say `Content-Type: application/json`: the types a cross-site form may send without
  asking (`text/plain`, form encodings) are refused with 415.
- **Slow clients.** A connection must deliver a request's headers within `HEADER_SECONDS` of
  opening (or of its previous answer); an idle keep-alive connection closes after
  `KEEP_ALIVE_SECONDS`; at most `MAX_CONNECTIONS` are open at once (uvicorn answers 503 past that).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

HEADER_SECONDS = 10.0  # to send a request's headers, from the connection's start or its last answer
KEEP_ALIVE_SECONDS = 5  # an idle keep-alive connection is closed after this
MAX_CONNECTIONS = 200  # open at once; more get 503 from uvicorn
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("", "0.0.0.0", "::")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the page on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind: str = "127.0.0.1", extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a server bound to `bind` answers to (IP addresses are always accepted besides)."""
    names = {*LOOPBACK_NAMES, *extra}
    if bind not in WILDCARDS:
        names.add(bind)
    if bind in WILDCARDS or not is_loopback(bind):  # reachable from the network: the machine's own names
        for name in (socket.gethostname(), socket.getfqdn()):
            if name:
                names.add(name)
    return frozenset(_normal(name) for name in names)


def _normal(host: str) -> str:
    return host.strip().lower().rstrip(".").strip("[]")


def host_name(header: str) -> str:
    """The name in a Host header, without its port: 'Example.COM.:8000' -> 'example.com', '[::1]:80' -> '::1'."""
    header = header.strip()
    if header.startswith("["):  # an IPv6 literal
        return _normal(header[: header.find("]") + 1] if "]" in header else header)
    return _normal(header.rsplit(":", 1)[0] if header.count(":") == 1 else header)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostAndOriginGuard:
    """ASGI middleware: the Host, Origin and content-type rules of the module docstring."""

    def __init__(self, app: Any, hosts: frozenset[str]) -> None:
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self.refusal(scope["method"], headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        body = json.dumps({"error": message}).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def refusal(self, method: str, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, message) for a request this server must not answer, else None."""
        host = headers.get("host", "")
        name = host_name(host)
        if not name or not (name in self.hosts or _is_address(name)):
            shown = json.dumps(host[:80])
            return 400, (
                f"Host {shown} is not a name this server answers to; open the page at the address "
                "`charrnn serve` printed (to reach it by another name, start it with --allow-host NAME)."
            )
        if method in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            if origin == "null" or parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
                return 403, f"Requests from another site ({json.dumps(origin[:80])}) are refused."
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            return 415, "Send the request body as JSON, with Content-Type: application/json."
        return None


def bounded_h11_protocol() -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline for each request's headers (uvicorn has none: a client
    sending one header byte at a time would hold its connection for ever)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11Protocol(H11Protocol):
        _watch: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._waiting_since = self.loop.time()
            self._watch = self.loop.call_later(HEADER_SECONDS, self._check_headers)

        def _waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _check_headers(self) -> None:
            self._watch = None
            if self.transport.is_closing():
                return
            now = self.loop.time()
            if not self._waiting_for_headers():
                self._waiting_since = now  # a request is being answered: a long generation is fine
            elif now - self._waiting_since >= HEADER_SECONDS:
                self.transport.close()  # no whole request in time: a slow or idle client
                return
            self._watch = self.loop.call_later(HEADER_SECONDS / 4, self._check_headers)

        def on_response_complete(self) -> None:
            self._waiting_since = self.loop.time()
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            super().connection_lost(exc)

    return BoundedH11Protocol


def server_config(app: Any, **settings: Any) -> Any:
    """A uvicorn.Config with the slow-client bounds of the module docstring (`settings`: host, port, ...)."""
    import uvicorn

    defaults = {
        "http": bounded_h11_protocol(),
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "limit_concurrency": MAX_CONNECTIONS,
        "log_level": "warning",
    }
    return uvicorn.Config(app, **{**defaults, **settings})
