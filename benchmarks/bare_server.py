"""A bare ingestion endpoint for the benchmarks: it answers every event as stored.

The benchmarks measure lunatrace, not a server: this one parses each request and
answers ``{"results": [{"id": ..., "success": true}, ...]}`` at once, storing nothing
(the fake Lunary server of the tests stores and checks events as the real one does,
which costs it far more per event than lunatrace spends sending them).
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    key = ""
    latency = 0.0

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK would add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """No access log."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.latency:
            time.sleep(self.latency)  # a network's round trip, spent before the answer
        if self.path != "/v1/runs/ingest":
            # Another SDK's endpoint (an OpenTelemetry exporter's): taken, not read.
            self._answer(200, b"", "application/x-protobuf")
            return
        if self.headers.get("Authorization") != f"Bearer {self.key}":
            self._answer(401, b'{"message": "Invalid API key"}')
            return
        events = json.loads(body).get("events", [])
        results = [{"id": event.get("runId"), "success": True} for event in events]
        self._answer(200, json.dumps({"results": results}).encode())

    def _answer(self, status: int, data: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def running(key: str, latency: float = 0.0) -> Iterator[str]:
    """The endpoint in a process of its own (spawned) for the body; yields its URL.
    ``latency``: seconds each request waits before its answer (a network's round trip)."""
    context = multiprocessing.get_context("spawn")
    ports, stop = context.Queue(), context.Event()
    server = context.Process(target=serve, args=(key, ports, stop, latency), daemon=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=30)}"
    finally:
        stop.set()
        server.join(10)


def serve(key: str, ports: Any, stop: Any, latency: float = 0.0) -> None:
    """Run the endpoint (in a process of its own, as a real server would be) until ``stop``."""
    handler = type("Handler", (_Handler,), {"key": key, "latency": latency})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    ports.put(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop.wait()
    server.shutdown()
