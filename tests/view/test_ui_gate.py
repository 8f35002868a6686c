"""The viewer's gate, over raw sockets: only its own loopback Host, only GET and HEAD,
and the security headers on every answer, refusals and the base class's errors included."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable

import pytest

import lunatrace
from lunatrace.ui.server import SECURITY_HEADERS, ViewerServer
from lunatrace.view.load import load_trace
from tests.view.conftest import store_path

SECRET = "the-secret-prompt"


def raw(server: ViewerServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as bytes and read the whole answer (the viewer closes after it)."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect((server.host, server.server_address[1]))
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def request(method: str, host: str | None, path: str = "/", extra: str = "", body: bytes = b"") -> bytes:
    host_line = "" if host is None else f"Host: {host}\r\n"
    return f"{method} {path} HTTP/1.1\r\n{host_line}{extra}Connection: close\r\n\r\n".encode() + body


def assert_secured(headers: dict[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name.lower()) == value, name


def record_secret() -> str:
    lunatrace.trace(name=SECRET)(lambda: SECRET)()
    lunatrace.flush()
    return load_trace(store_path()).id


REBINDING_HOSTS = [
    "127.attacker.example:{port}",
    "127.0.0.1.nip.io:{port}",
    "localhost.attacker.example:{port}",
    "attacker.example:{port}",
    "127.0.0.1:{other}",
    "localhost:{other}",
    "127.0.0.1",
    "localhost",
    "127.0.0.2:{port}",
    "[::1]:{port}",
    "127.0.0.1:{port}.attacker.example",
    "",
]


@pytest.mark.parametrize("template", REBINDING_HOSTS)
def test_only_the_exact_loopback_host_and_port_get_traces(
    serve: Callable[..., ViewerServer], template: str
) -> None:
    trace_id = record_secret()
    server = serve()
    port = server.server_address[1]
    host = template.format(port=port, other=port + 1 if port < 65535 else port - 1)
    for path in ("/", f"/trace/{trace_id}"):
        status, headers, body = raw(server, request("GET", host, path))
        assert status == 403, (host, path)
        assert SECRET.encode() not in body and trace_id.encode() not in body
        assert_secured(headers)
    status, headers, body = raw(server, request("HEAD", host))
    assert status == 403 and body == b""
    assert_secured(headers)


def test_a_missing_or_repeated_host_is_refused(serve: Callable[..., ViewerServer]) -> None:
    record_secret()
    server = serve()
    own = f"127.0.0.1:{server.server_address[1]}"
    assert raw(server, request("GET", None))[0] == 403
    assert raw(server, b"GET / HTTP/1.0\r\n\r\n")[0] == 403
    status, headers, body = raw(server, request("GET", own, extra="Host: attacker.example\r\n"))
    assert status == 403 and SECRET.encode() not in body
    assert_secured(headers)


def test_the_names_a_browser_uses_on_loopback_are_answered(serve: Callable[..., ViewerServer]) -> None:
    trace_id = record_secret()
    server = serve()
    port = server.server_address[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}"):
        status, headers, body = raw(server, request("GET", host, f"/trace/{trace_id}"))
        assert status == 200, host
        assert SECRET.encode() in body
        assert_secured(headers)


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_bound_to_ipv6_loopback_it_answers_its_bracketed_address(serve: Callable[..., ViewerServer]) -> None:
    record_secret()
    server = serve("::1")
    port = server.server_address[1]
    assert server.url == f"http://[::1]:{port}/"
    for host in (f"[::1]:{port}", f"localhost:{port}"):
        assert raw(server, request("GET", host))[0] == 200, host
    for host in (f"127.0.0.1:{port}", f"::1:{port}", f"[::1]:{port + 1}", "[::1]", f"[::1].nip.io:{port}"):
        assert raw(server, request("GET", host))[0] == 403, host


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "POST", "PUT", "DELETE", "PATCH", "PROPFIND", "BREW"])
def test_any_other_method_gets_405_with_allow_and_the_security_headers(
    serve: Callable[..., ViewerServer], method: str
) -> None:
    record_secret()
    server = serve()
    own = f"127.0.0.1:{server.server_address[1]}"
    status, headers, body = raw(server, request(method, own))
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    assert_secured(headers)
    assert SECRET.encode() not in body


def test_405_for_options_star_and_a_request_with_a_body(serve: Callable[..., ViewerServer]) -> None:
    server = serve()
    own = f"127.0.0.1:{server.server_address[1]}"
    status, headers, _ = raw(server, request("OPTIONS", own, path="*"))
    assert status == 405 and headers["allow"] == "GET, HEAD"
    payload = b'{"delete": "everything"}' * 1000
    extra = f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    status, headers, body = raw(server, request("POST", own, extra=extra, body=payload))
    assert status == 405 and body == b"The viewer is read-only."
    assert_secured(headers)
    started = time.monotonic()  # a body announced but never sent does not hold the answer
    assert raw(server, request("POST", own, extra="Content-Length: 1000\r\n"))[0] == 405
    assert time.monotonic() - started < 8
    # the same through an ordinary client
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    connection.request("OPTIONS", "/")
    response = connection.getresponse()
    assert response.status == 405 and response.getheader("Allow") == "GET, HEAD"
    assert response.getheader("Content-Security-Policy") == SECURITY_HEADERS["Content-Security-Policy"]
    connection.close()


def test_the_base_class_errors_carry_the_security_headers(serve: Callable[..., ViewerServer]) -> None:
    server = serve()
    status, headers, _ = raw(server, b"GET / / HTTP/1.1\r\n\r\n")
    assert status == 400
    assert_secured(headers)
    status, headers, _ = raw(server, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
    assert status == 414
    assert_secured(headers)
