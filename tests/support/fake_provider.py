"""A fake model provider: a real HTTP server on 127.0.0.1 that a real client is pointed at.

Generic over providers: a provider's module (``fake_openai.py``, ``fake_anthropic.py``)
registers routes whose handlers turn a recorded request into a reply, written the way the
provider writes it:

- :class:`Json`: a JSON body with a status (an error status with the provider's error body
  is a ``Json`` too);
- :class:`Sse`: server-sent events, chunked, one ``event:``/``data:`` block per item, with
  an optional pause before each item, and ``cut_after`` to drop the connection mid-way (no
  final chunk: the client sees a body that ends too early).

Faults are queued per path and served before the route's own reply
(:meth:`FakeProvider.queue`): a 429 then a success, a stream cut after two items, a slow
answer (``delay_s``). Every request is recorded (:attr:`FakeProvider.requests`: method,
path, headers, parsed JSON body), so a test asserts on what the client really sent.

Standard library only: it also runs in the venv of the oldest supported clients.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any  # the parsed JSON body, or None


@dataclass(frozen=True)
class Json:
    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the answer


@dataclass(frozen=True)
class Sse:
    """Server-sent events: each item is ``(event name or None, data)``; a data that is not
    a string is sent as JSON."""

    items: Sequence[tuple[str | None, Any]]
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before the answer's headers
    item_delay_s: float = 0.0  # before each item
    cut_after: int | None = None  # drop the connection after this many items


Reply = Json | Sse
Handler = Callable[[Recorded], Reply]


class FakeProvider:
    """The server. ``route(method, path, handler)``, ``start()``, then point a client at
    :attr:`url`; ``stop()`` at the end (the :func:`serve` helper does both)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: dict[tuple[str, str], Handler] = {}
        self._queued: dict[str, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- configuration --------------------------------------------------------------

    def route(self, method: str, path: str, handler: Handler) -> None:
        self._routes[(method.upper(), path)] = handler

    def queue(self, path: str, *replies: Reply) -> None:
        """Serve ``replies`` to the next requests for ``path``, in order, before its route."""
        with self._lock:
            self._queued.setdefault(path, deque()).extend(replies)

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies received for ``path``, oldest first."""
        return [each.body for each in self.requests if each.path == path]

    # --- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeProvider:
        server = _Server(("127.0.0.1", 0), _handler_class(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- serving --------------------------------------------------------------------

    def _reply_to(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            queued = self._queued.get(request.path)
            if queued:
                return queued.popleft()
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            return Json({"error": {"message": f"no route {request.method} {request.path}"}}, status=404)
        return handler(request)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that drops its connection (a stream closed early, a pool closed at
        exit) is routine here, not an error worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_class(provider: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class ProviderHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, as clients expect

        def setup(self) -> None:
            super().setup()
            # Headers and body are written separately: without this, Nagle's algorithm and
            # the client's delayed acknowledgement hold each answer back for 40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            path = self.path.split("?", 1)[0]
            reply = provider._reply_to(Recorded(method, path, dict(self.headers.items()), body))
            time.sleep(reply.delay_s)
            try:
                if isinstance(reply, Json):
                    self._json(reply)
                else:
                    self._sse(reply)
            except ConnectionError:  # the client closed its stream early
                self.close_connection = True

        def _json(self, reply: Json) -> None:
            data = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _sse(self, reply: Sse) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            for index, (event, data) in enumerate(reply.items):
                if reply.cut_after is not None and index >= reply.cut_after:
                    self.wfile.flush()
                    self.close_connection = True
                    return  # no final chunk: the body ends too early
                time.sleep(reply.item_delay_s)
                text = data if isinstance(data, str) else json.dumps(data)
                block = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
                self._chunk(block.encode())
            self._chunk(b"")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return ProviderHandler


def one_run(
    events: Sequence[Mapping[str, Any]], run_type: str = "llm"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The start and the end (or error) of the only ``run_type`` run among wire ``events``."""
    starts = [dict(e) for e in events if e["event"] == "start" and e["type"] == run_type]
    assert len(starts) == 1, f"expected one {run_type} run, got {len(starts)}: {events}"
    ends = [dict(e) for e in events if e["runId"] == starts[0]["runId"] and e["event"] in ("end", "error")]
    assert len(ends) == 1, f"expected one end or error, got {len(ends)}: {events}"
    return starts[0], ends[0]


def serve(setup: Callable[[FakeProvider], None]) -> Iterator[FakeProvider]:
    """Start a server with ``setup``'s routes, yield it, stop it: a fixture's body."""
    provider = FakeProvider()
    setup(provider)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    """A fake provider with no routes: register them in the test."""
    yield from serve(lambda provider: None)
