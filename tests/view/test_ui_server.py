"""The viewer over HTTP: a real server on 127.0.0.1 reading a real store file."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lunatrace
from lunatrace.core.transport.store import EventStore
from lunatrace.ui.server import CSP, ViewerServer
from tests.view.conftest import store_path


def get(
    server: ViewerServer, path: str, method: str = "GET", host: str | None = None
) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    headers = {"Host": host} if host else {}
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    return response.status, dict(response.getheaders()), body


@lunatrace.trace(type="agent", name="triage")
def triage(ticket: str) -> str:
    return classify(ticket)


@lunatrace.trace(type="tool", name="classify")
def classify(ticket: str) -> str:
    if "crash" in ticket:
        raise RuntimeError("classifier down")
    return "billing"


def record_traces() -> None:
    with lunatrace.identify("alice"), lunatrace.tags(["vip"]):
        triage("refund please")
    with lunatrace.identify("bob"):
        try:
            triage("app crash")
        except RuntimeError:
            pass
    lunatrace.trace(name="nightly-report", type="chain")(lambda: "ok")()
    lunatrace.flush()


def rows(body: str) -> list[str]:
    return [part.split('"', 1)[0] for part in body.split('<tr data-trace-id="')[1:]]


def test_list_newest_first_with_filters(serve: Callable[..., ViewerServer]) -> None:
    record_traces()
    server = serve()
    status, headers, body = get(server, "/")
    assert status == 200
    assert headers["Content-Security-Policy"] == CSP
    assert "script-src 'none'" in CSP
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    listed = rows(body)
    assert len(listed) == 3
    names = [
        body.split(f'data-trace-id="{tid}"', 1)[1].split("</a>", 1)[0].rsplit(">", 1)[1] for tid in listed
    ]
    assert names == ["nightly-report", "triage", "triage"]

    assert len(rows(get(server, "/?status=error")[2])) == 1
    assert "bob" in get(server, "/?status=error")[2]
    assert len(rows(get(server, "/?user=alice")[2])) == 1
    assert len(rows(get(server, "/?tag=vip")[2])) == 1
    assert len(rows(get(server, "/?type=agent")[2])) == 2
    assert len(rows(get(server, "/?name=nightly-report")[2])) == 1
    nothing = get(server, "/?name=nope")[2]
    assert rows(nothing) == [] and 'id="no-match"' in nothing and 'id="empty-state"' not in nothing


def test_pagination(serve: Callable[..., ViewerServer]) -> None:
    step = lunatrace.trace(name="tick")(lambda i: i)
    for i in range(30):
        step(i)
    lunatrace.flush()
    server = serve()
    first = get(server, "/")[2]
    second = get(server, "/?page=2")[2]
    assert len(rows(first)) == 25 and len(rows(second)) == 5
    assert not set(rows(first)) & set(rows(second))
    assert "page 1 of 2 · 30 traces" in first and 'href="/?page=2"' in first
    assert "page 2 of 2" in second and 'rel="prev" href="/"' in second
    assert len(rows(get(server, "/?page=junk")[2])) == 25
    past = get(server, "/?page=99")[2]
    assert "page 99 of" not in past and "page 2 of 2" in past
    assert "Page 99 is past the last page (2)." in past and 'href="/?page=2"' in past


def test_trace_page_and_not_found(serve: Callable[..., ViewerServer]) -> None:
    record_traces()
    server = serve()
    failing = rows(get(server, "/?status=error")[2])[0]
    status, _, body = get(server, f"/trace/{failing}")
    assert status == 200
    assert body.count('class="lt-run"') == 2
    assert 'data-run-type="tool" data-status="error"' in body
    assert "RuntimeError: classifier down" in body
    status, _, body = get(server, f"/trace/{failing[:8]}")
    assert status == 200 and f'data-trace-id="{failing}"' in body
    assert get(server, "/trace/ffffffff")[0] == 404
    assert get(server, "/nothing/here")[0] == 404


def test_read_only_and_loopback_host_only(serve: Callable[..., ViewerServer]) -> None:
    server = serve()
    assert get(server, "/", method="POST")[0] == 405
    assert get(server, "/", method="DELETE")[0] == 405
    assert get(server, "/", host="evil.example:80")[0] == 403
    assert get(server, "/", host=f"localhost:{server.server_address[1]}")[0] == 200
    status, headers, body = get(server, "/", method="HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 0


def test_empty_store_explains_how_to_record(serve: Callable[..., ViewerServer]) -> None:
    server = serve()
    status, _, body = get(server, "/")
    assert status == 200
    assert 'id="empty-state"' in body
    assert "No traces yet" in body and "lunatrace demo" in body and "@lunatrace.trace" in body
    assert str(store_path()) in body
    assert not store_path().exists()  # the viewer never creates a store
    assert get(server, "/trace/abc")[0] == 404


def test_store_created_after_start_is_picked_up(serve: Callable[..., ViewerServer]) -> None:
    server = serve()
    assert 'id="empty-state"' in get(server, "/")[2]
    EventStore(store_path()).close()  # an existing but empty store: still the empty state
    assert 'id="empty-state"' in get(server, "/")[2]
    record_traces()
    body = get(server, "/")[2]
    assert 'id="empty-state"' not in body and len(rows(body)) == 3


def _cli(*args: str, env_store: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LUNATRACE_STORE": str(env_store)}
    return subprocess.run(
        [sys.executable, "-m", "lunatrace.cli", "ui", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_port_in_use_is_refused_clearly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _cli("--port", str(port), env_store=tmp_path / "events.db")
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_pages_refresh_themselves_only_when_asked(serve: Callable[..., ViewerServer]) -> None:
    step = lunatrace.trace(name="tick")(lambda i: i)
    step(1)
    lunatrace.flush()
    server = serve()
    plain = get(server, "/")[2]
    assert 'http-equiv="refresh"' not in plain and 'href="/?refresh=5"' in plain
    live = get(server, "/?refresh=5&status=success")[2]
    assert '<meta http-equiv="refresh" content="5">' in live
    assert "refreshing every 5 s" in live and 'href="/?status=success">stop</a>' in live
    assert '<input type="hidden" name="refresh" value="5">' in live  # a filter keeps it on
    for junk in ("1", "100000", "soon"):
        assert 'http-equiv="refresh"' not in get(server, f"/?refresh={junk}")[2]
    trace_id = re.search(r'data-trace-id="([^"]+)"', plain)
    assert trace_id is not None
    trace = get(server, f"/trace/{trace_id.group(1)}?refresh=10")[2]
    assert '<meta http-equiv="refresh" content="10">' in trace and "refreshing every 10 s" in trace
