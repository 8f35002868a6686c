"""The local viewer's HTTP server: read-only, stdlib only, loopback by default.

Traces hold untrusted text, so beyond escaping every value the server sends a
Content-Security-Policy that forbids all scripts on every response, errors included:
even a rendering bug could not run a traced prompt's ``<script>``. Every request passes
one gate before it is dispatched: while bound to loopback, a ``Host`` header other than
the exact address and port the viewer listens on (see :mod:`lunatrace.ui.hosts`) gets
403, so a web page cannot reach the viewer by DNS rebinding; a method other than
``GET``/``HEAD`` gets 405.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from lunatrace.core.transport.store import EventStore, StoreError, open_existing
from lunatrace.ui.hosts import allowed_hosts
from lunatrace.ui.hosts import is_loopback as is_loopback  # re-exported for ``lunatrace ui``
from lunatrace.ui.pages import PAGE_SIZE, ListQuery, list_page, not_found_page, refresh_of, trace_page
from lunatrace.view.load import TraceNotFound, load_trace

logger = logging.getLogger("lunatrace")

CSP = (
    "default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
READ_METHODS = ("GET", "HEAD")
ALLOW = ", ".join(READ_METHODS)
_TRACE_PATH = re.compile(r"^/trace/([^/]+)$")
_MAX_DISCARDED_BODY = 1 << 20
_DISCARD_TIMEOUT_S = 2.0


class ViewerServer(ThreadingHTTPServer):
    """Serves the pages for one store file."""

    daemon_threads = True

    allow_reuse_port = False  # a second viewer on the same port must fail, not share it

    def __init__(self, address: tuple[str, int], store_path: Path) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, ViewerHandler)
        # ``server_address`` is what the socket really bound: a resolved, canonical address.
        self.allowed_hosts = allowed_hosts(self.host, int(self.server_address[1]))
        self.store_path = Path(store_path).expanduser()
        self._store: EventStore | None = None
        self._store_lock = threading.Lock()
        try:
            self.store()
        except StoreError:
            super().server_close()
            raise

    def store(self) -> EventStore | None:
        """The store, opened once it exists (``None`` before: the viewer never creates it)."""
        with self._store_lock:
            if self._store is None and self.store_path.is_file():
                self._store = open_existing(self.store_path)
            return self._store

    @property
    def host(self) -> str:
        host = self.server_address[0]
        return host.decode() if isinstance(host, bytes) else str(host)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.server_address[1]}/"

    def server_close(self) -> None:
        super().server_close()
        store: EventStore | None = getattr(self, "_store", None)  # absent if binding failed
        if store is not None:
            store.close()


class ViewerHandler(BaseHTTPRequestHandler):
    server: ViewerServer
    server_version = "lunatrace-ui"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("lunatrace ui: " + format, *args)

    def parse_request(self) -> bool:
        """Parse, then refuse what the viewer must not answer, before any dispatch.

        The base class would answer an unknown method with 501 and none of the security
        headers; refusing here covers every method, including ones no ``do_`` names.
        """
        if not super().parse_request():
            return False
        if not self._host_allowed():
            self._refuse(HTTPStatus.FORBIDDEN, "Unexpected Host header.", {})
            return False
        if self.command not in READ_METHODS:
            self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, "The viewer is read-only.", {"Allow": ALLOW})
            return False
        return True

    def _host_allowed(self) -> bool:
        allowed = self.server.allowed_hosts
        if allowed is None:
            return True
        hosts = self.headers.get_all("Host") or []
        return len(hosts) == 1 and hosts[0].strip().lower() in allowed

    def _refuse(self, status: HTTPStatus, message: str, extra: dict[str, str]) -> None:
        """Answer ``status`` and close: a refused request's body is never parsed as the next."""
        self._discard_body()
        headers = {**extra, "Connection": "close"}
        self._send(status, message, "text/plain; charset=utf-8", headers, head_only=self.command == "HEAD")

    def _discard_body(self) -> None:
        """Read a small body sent with a refused request: closing with unread data makes the
        kernel reset the connection, and the client could lose the answer. A body that is
        announced but not sent is given up on soon, so it cannot hold the thread."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return
        if 0 < length <= _MAX_DISCARDED_BODY:
            try:
                self.connection.settimeout(_DISCARD_TIMEOUT_S)
                self.rfile.read(length)
            except OSError:
                pass

    def end_headers(self) -> None:
        """Every response carries the security headers, the base class's own errors too."""
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def do_GET(self) -> None:
        self._respond(head_only=False)

    def do_HEAD(self) -> None:
        self._respond(head_only=True)

    def _respond(self, head_only: bool) -> None:
        url = urlsplit(self.path)
        try:
            status, body = self._route(url.path, parse_qs(url.query))
        except StoreError as exc:
            status, body = HTTPStatus.INTERNAL_SERVER_ERROR, not_found_page(str(exc))
        self._send(status, body, "text/html; charset=utf-8", head_only=head_only)

    def _route(self, path: str, params: dict[str, list[str]]) -> tuple[HTTPStatus, str]:
        store = self.server.store()
        if store is None:
            if path in ("/", "/traces"):
                return HTTPStatus.OK, list_page([], 0, ListQuery(), self.server.store_path, 0)
            return HTTPStatus.NOT_FOUND, not_found_page(f"No store at {self.server.store_path} yet.")
        if path in ("/", "/traces"):
            store.index_pending()  # what an older release wrote since (a read when there is none)
            query = ListQuery.parse(params)
            filters, problems = query.store_filters()
            total = store.count_traces(**filters)
            summaries = store.list_traces(limit=PAGE_SIZE, offset=(query.page - 1) * PAGE_SIZE, **filters)
            store_total = total if not query.filtered else store.count_traces()
            return HTTPStatus.OK, list_page(summaries, total, query, store.path, store_total, problems)
        match = _TRACE_PATH.match(path)
        if match:
            try:
                trace = load_trace(store, unquote(match.group(1)))
            except TraceNotFound as exc:
                return HTTPStatus.NOT_FOUND, not_found_page(str(exc))
            selected = (params.get("run") or [""])[0] or None
            origin = ListQuery.of_origin(params)
            damaged = store.damaged_in(trace.id)
            return HTTPStatus.OK, trace_page(trace, damaged, refresh_of(params), selected, origin)
        return HTTPStatus.NOT_FOUND, not_found_page(f"No page at {path}.")

    def _send(
        self,
        status: HTTPStatus,
        body: str,
        content_type: str,
        extra: dict[str, str] | None = None,
        head_only: bool = False,
    ) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head_only:
            self.wfile.write(data)


def make_server(store_path: Path, host: str = "127.0.0.1", port: int = 8765) -> ViewerServer:
    """Bind the viewer (``port=0``: any free port). Raises ``OSError`` if the port is taken."""
    return ViewerServer((host, port), store_path)
