"""The commands on a damaged store: ``push`` sets rows that are not events aside and says
so in one line, ``show`` and the viewer show what can be read of a trace."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lunatrace.cli import main
from lunatrace.core.transport.store import EventStore
from tests.commands.helpers import point_at
from tests.core.transport.helpers import spool_with_a_damaged_row
from tests.support.fake_lunary import FakeLunary


def test_push_sets_a_damaged_row_aside_and_says_so_in_one_line(
    lunary_server: FakeLunary,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "spool.db"
    spool_with_a_damaged_row(path, good=6)
    point_at(monkeypatch, lunary_server)
    assert main(["push", "--store", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "Pushed 6 event(s)" in out
    assert err.strip().splitlines() == [f"lunatrace push: 1 damaged event(s) in {path} set aside, not sent."]
    assert EventStore(path).count_pending() == 0


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
