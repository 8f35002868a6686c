"""A damaged store: rows that are not events, and files that are not databases.

Before, one bad spool row made every delivery raise (nothing reached a healthy server,
nothing was counted), and a file that was not a database cost every later event.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

import lunatrace
from lunatrace.cli import main
from lunatrace.core.transport.store import DAMAGED, EventStore
from tests.core.transport.helpers import emit_traces, keys_of, send_to
from tests.support.fake_lunary import FakeLunary


def spool_with_a_damaged_row(path: Path, good: int) -> None:
    """A spool holding ``good`` events around one row whose body is not JSON."""
    store = EventStore(path)
    events = [
        {
            "type": "tool",
            "event": "start",
            "runId": f"0000000{i}-0000-4000-8000-000000000000",
            "timestamp": "2026-12-01T00:00:00.000Z",
            "name": f"kept-{i}",
        }
        for i in range(good)
    ]
    store.append(events[: good // 2], delivered=False)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO events (run_id, trace_id, state, body) VALUES ('x', 'x', 1, '{\"type\": \"to')"
        )
    store.append(events[good // 2 :], delivered=False)
    store.close()


def point_at(monkeypatch: pytest.MonkeyPatch, server: FakeLunary, key: str) -> None:
    """The CLI's configuration: ``server``'s address, with ``key``."""
    monkeypatch.setenv("LUNARY_PUBLIC_KEY", key)
    monkeypatch.setenv("LUNARY_API_URL", server.url)


def test_a_damaged_spool_row_is_set_aside_and_delivery_goes_on(
    lunary_server: FakeLunary, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spool.db"
    spool_with_a_damaged_row(path, good=4)
    send_to(lunary_server, path)
    with caplog.at_level(logging.ERROR, logger="lunatrace"):
        expected = emit_traces(50)
        assert lunatrace.flush(10)
    stats = lunatrace.stats()
    assert [e["name"] for e in lunary_server.events[:4]] == [f"kept-{i}" for i in range(4)]
    assert sorted(keys_of(lunary_server.events[4:])) == sorted(expected)
    assert stats["failed"] == 1 and stats["sent"] == len(expected) + 4
    assert caplog.text.count("damaged event(s)") == 1
    states = sqlite3.connect(path).execute("SELECT state FROM events WHERE run_id = 'x'").fetchall()
    assert states == [(DAMAGED,)]


def test_push_sets_a_damaged_row_aside_and_says_so_in_one_line(
    lunary_server: FakeLunary,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "spool.db"
    spool_with_a_damaged_row(path, good=6)
    point_at(monkeypatch, lunary_server, lunary_server.key)
    assert main(["push", "--store", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "Pushed 6 event(s)" in out
    assert err.strip().splitlines() == [f"lunatrace push: 1 damaged event(s) in {path} set aside, not sent."]
    assert EventStore(path).count_pending() == 0


def test_a_store_that_is_not_a_database_is_set_aside_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not a SQLite database" * 100)
    lunatrace.configure(store_path=path)
    with caplog.at_level(logging.ERROR, logger="lunatrace"):
        lunatrace.trace(lambda: "ok")()
        assert lunatrace.flush(10)
    assert lunatrace.stats()["stored"] == 2
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("events.db.damaged-")]
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not")
    assert "was damaged" in caplog.text and str(kept[0]) in caplog.text
    assert EventStore(path).stats()["events"] == 2


def test_push_dry_run_without_a_key_fails_like_push(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.db"
    EventStore(path).close()
    assert main(["push", "--dry-run", "--store", str(path)]) == 2
    assert "no project key configured" in capsys.readouterr().err


def test_a_refused_key_is_not_reported_as_a_push(
    lunary_server: FakeLunary,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "spool.db"
    spool_with_a_damaged_row(path, good=2)
    point_at(monkeypatch, lunary_server, "11111111-2222-4333-8444-555555555555")
    assert main(["push", "--store", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "Pushed" not in out and "was refused" in err and "Fix the configuration" in err


def a_trace_with_a_damaged_row(path: Path) -> str:
    """A stored trace (a run's start and end) with a third row of it that is not JSON."""
    run = "00000000-0000-4000-8000-00000000000a"
    store = EventStore(path)
    for event in ("start", "end"):
        body = {"type": "agent", "event": event, "runId": run, "timestamp": "2026-12-01T00:00:00.000Z"}
        store.append([{**body, "name": "kept"} if event == "start" else body], delivered=True)
    store.close()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO events (run_id, trace_id, state, body) VALUES (?, ?, 0, 'garbage')", (run, run)
        )
    return run


def test_show_and_the_viewer_show_a_trace_with_a_damaged_row_and_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import http.client
    import threading

    from lunatrace.ui.server import make_server

    path = tmp_path / "events.db"
    run = a_trace_with_a_damaged_row(path)
    assert main(["show", run, "--store", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "kept" in out
    assert err.strip().splitlines() == ["lunatrace show: 1 damaged event(s) of this trace could not be read"]
    server = make_server(path, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        connection.request("GET", f"/trace/{run}")
        response = connection.getresponse()
        page = response.read().decode()
    finally:
        server.shutdown()
    assert response.status == 200 and "kept" in page
    assert "1 damaged event(s) of this trace could not be read" in page
