"""A real HTTP server on 127.0.0.1 that answers like the Lunary ingestion API.

It follows the protocol notes (``POST /v1/runs/ingest``, Bearer key, ``{"events": [...]}``,
per-event results, timestamp-sorted processing, duplicate starts refused, 401/402/413/429)
and can inject the faults a real deployment shows: error statuses, rate limiting with
``Retry-After``, slow answers, connection resets, malformed bodies, and going down and
coming back on the same port. Tests read what it stored from :attr:`FakeLunary.events`.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INGEST_PATH = "/v1/runs/ingest"
DUPLICATE_START = "Run with this ID already exists in the database."
BODY_LIMIT = 20 * 1024 * 1024


@dataclass
class Fault:
    """What to do instead of (or besides) a normal answer, for one request."""

    status: int | None = None  # answer this status without processing
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    reset: bool = False  # drop the connection without an answer
    process: bool = False  # process the events first, then apply the fault


@dataclass
class Request:
    """One request the server received, as recorded for assertions."""

    path: str
    headers: dict[str, str]
    status: int
    events: int
    received_at: float


class FakeLunary:
    """The fake server. ``start()`` binds a free port (or the previous one after ``stop()``)."""

    def __init__(self, key: str | None = None, *, body_limit: int = BODY_LIMIT) -> None:
        self.key = key or str(uuid.uuid4())
        self.valid_keys = {self.key}
        self.body_limit = body_limit
        self.events: list[dict[str, Any]] = []  # stored events, in processing order
        self.rejected: list[tuple[dict[str, Any], str]] = []  # events answered success: false
        self.orphans: list[str] = []  # starts whose parent was not stored yet
        self.unmatched: list[str] = []  # end/error events whose start was not stored yet
        self.requests: list[Request] = []
        self.max_in_flight = 0
        self.delay = 0.0  # added to every answer
        self.fail_event_ids: set[str] = set()  # runIds answered success: false
        self._faults: deque[Fault] = deque()
        self._started: set[str] = set()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._process_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ingest_url(self) -> str:
        return self.url + INGEST_PATH

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> FakeLunary:
        """Listen (again) on :attr:`port`, or on a free port the first time."""
        handler = type("Handler", (_Handler,), {"fake": self})
        deadline = time.monotonic() + 5.0
        while True:
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (clients see the server gone)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _reset(conn)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeLunary:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- fault injection --------------------------------------------------------------

    def fail_next(
        self, count: int, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next ``count`` requests with ``status`` without storing anything."""
        raw = body if isinstance(body, bytes) else json.dumps(body or {"message": "injected"}).encode()
        for _ in range(count):
            self._faults.append(Fault(status=status, body=raw, headers=dict(headers or {})))

    def rate_limit_next(self, count: int, retry_after: float = 1) -> None:
        """Answer 429 with ``Retry-After`` and a plain-text body, like the real limiter."""
        for _ in range(count):
            self._faults.append(
                Fault(
                    status=429,
                    body=b"Too Many Requests",
                    headers={"Retry-After": f"{retry_after:g}", "Content-Type": "text/plain"},
                )
            )

    def malformed_next(self, count: int) -> None:
        """Answer 200 with a body that is not JSON."""
        for _ in range(count):
            self._faults.append(Fault(status=200, body=b"<html>gateway</html>"))

    def reset_next(self, count: int, *, after_processing: bool = False) -> None:
        """Drop the connection without answering (optionally after storing the events)."""
        for _ in range(count):
            self._faults.append(Fault(reset=True, process=after_processing))

    def slow_next(self, count: int, seconds: float) -> None:
        """Wait ``seconds`` before answering the next ``count`` requests (then answer normally)."""
        for _ in range(count):
            self._faults.append(Fault(delay=seconds, process=True))

    def clear_faults(self) -> None:
        self._faults.clear()

    # --- inspection -------------------------------------------------------------------

    def ids(self, event: str = "start") -> list[str]:
        return [e["runId"] for e in self.events if e.get("event") == event]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` events are stored."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # --- request handling (called from the handler threads) ---------------------------

    def _next_fault(self) -> Fault | None:
        try:
            return self._faults.popleft()
        except IndexError:
            return None

    def _process(self, events: list[Any]) -> list[dict[str, Any]]:
        """Store a batch as the server does: sorted by timestamp (stable), one by one."""
        results: list[dict[str, Any]] = []
        ordered = sorted(events, key=lambda e: str(e.get("timestamp", "")) if isinstance(e, dict) else "")
        with self._process_lock:
            for event in ordered:
                if not isinstance(event, dict):
                    results.append({"id": None, "success": False, "error": "Invalid event"})
                    continue
                rid = event.get("runId")
                error = self._check(event)
                if error is None:
                    self.events.append(event)
                    results.append({"id": rid, "success": True})
                else:
                    self.rejected.append((event, error))
                    results.append({"id": rid, "success": False, "error": error})
        return results

    def _check(self, event: dict[str, Any]) -> str | None:
        rid, kind = event.get("runId"), event.get("event")
        if rid in self.fail_event_ids:
            return "injected failure"
        if kind == "start":
            if rid in self._started:
                return DUPLICATE_START
            parent = event.get("parentRunId")
            if parent is not None and parent not in self._started:
                self.orphans.append(str(rid))
            self._started.add(str(rid))
        elif kind in ("end", "error") and rid not in self._started:
            self.unmatched.append(str(rid))
        return None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLunary
    protocol_version = "HTTP/1.1"
    timeout = 10

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer (real servers set it too).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the default stderr access log."""

    def do_GET(self) -> None:
        self._answer(404, b'{"message": "Not found"}')

    def do_POST(self) -> None:
        fake = self.fake
        with fake._lock:
            fake._in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
        try:
            self._post()
        finally:
            with fake._lock:
                fake._in_flight -= 1

    def _post(self) -> None:
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, answer, headers, count = self._ingest(body)
        fake.requests.append(Request(self.path, dict(self.headers), status, count, time.monotonic()))
        if status < 0:
            _reset(self.connection)
            self.close_connection = True
            return
        self._answer(status, answer, headers)

    def _ingest(self, body: bytes) -> tuple[int, bytes, dict[str, str], int]:
        fake = self.fake
        if self.path != INGEST_PATH:
            # The real server's auth middleware refuses unknown routes, trailing slash included.
            return 401, b'{"message": "Invalid API key"}', {}, 0
        fault = fake._next_fault()
        delay = fake.delay + (fault.delay if fault else 0.0)
        if delay:
            time.sleep(delay)
        if fault is not None and not fault.process:
            if fault.reset:
                return -1, b"", {}, 0
            return fault.status or 500, fault.body or b"", fault.headers, 0
        auth = self.headers.get("Authorization", "")
        parts = auth.split()
        key = parts[1] if len(parts) > 1 else self.headers.get("X-API-Key")
        if not key:
            return 402, b'{"message": "Incorrect project id format"}', {}, 0
        if key not in fake.valid_keys:
            return 401, b'{"message": "Invalid API key"}', {}, 0
        if len(body) > fake.body_limit:
            return 413, b'{"message": "request entity too large"}', {}, 0
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, b'{"message": "Invalid JSON"}', {}, 0
        events = payload.get("events") if isinstance(payload, dict) else None
        if not isinstance(events, list):
            return 500, b'{"message": "Missing events payload."}', {}, 0
        results = fake._process(events)
        if fault is not None and fault.reset:
            return -1, b"", {}, len(events)
        return 200, json.dumps({"results": results}).encode(), {}, len(events)

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            headers = headers or {}
            self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def _reset(conn: socket.socket) -> None:
    """Close with SO_LINGER 0 so the peer sees a TCP reset, not a clean close."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    except OSError:
        pass
