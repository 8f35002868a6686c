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
from lunatrace.core.transport.store import DAMAGED, EventStore
from tests.core.transport.helpers import emit_traces, keys_of, send_to, spool_with_a_damaged_row
from tests.support.fake_lunary import FakeLunary


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
    assert stats["failed"] == stats["failed_invalid"] == 1 and stats["sent"] == len(expected) + 4
    assert caplog.text.count("damaged event(s)") == 1
    states = sqlite3.connect(path).execute("SELECT state FROM events WHERE run_id = 'x'").fetchall()
    assert states == [(DAMAGED,)]


def test_a_spool_row_holding_nan_is_set_aside_and_the_rest_delivered(
    lunary_server: FakeLunary, tmp_path: Path
) -> None:
    path = tmp_path / "spool.db"
    spool_with_a_damaged_row(path, good=2)
    with sqlite3.connect(path) as db:  # Python reads NaN, but it is not JSON: it cannot be sent again
        body = '{"type": "tool", "event": "start", "runId": "x", "input": NaN}'
        db.execute("INSERT INTO events (run_id, trace_id, state, body) VALUES ('x', 'x', 1, ?)", (body,))
    send_to(lunary_server, path)
    expected = emit_traces(1)
    assert lunatrace.flush(10)
    assert [e["name"] for e in lunary_server.events[:2]] == ["kept-0", "kept-1"]
    assert keys_of(lunary_server.events[2:]) == expected
    assert lunatrace.stats()["failed_invalid"] == 2
    states = sqlite3.connect(path).execute("SELECT state FROM events WHERE run_id = 'x'").fetchall()
    assert states == [(DAMAGED,), (DAMAGED,)]


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
