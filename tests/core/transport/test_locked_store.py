"""A store another program keeps write-locked when a process starts.

Before, opening the store needed its write lock: held past the 30 s busy timeout, the
open failed, the spool looked empty, new events went out live and the events an earlier
process had spooled were never re-sent by this process. Now an existing store opens with
reads only; new events still go out live while the lock lasts (spooling them would wait
on it too), and the spool is re-sent once the store is free again.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from pathlib import Path

import lunatrace
from lunatrace.core.transport.store import BUSY_TIMEOUT_MS, EventStore
from tests.core.transport.helpers import send_to
from tests.support.fake_lunary import FakeLunary

HELD_S = BUSY_TIMEOUT_MS / 1000 + 3


def test_spooled_events_are_sent_once_a_store_locked_past_the_busy_timeout_is_free(
    lunary_server: FakeLunary, tmp_path: Path
) -> None:
    path = tmp_path / "spool.db"
    start = {"type": "tool", "event": "start", "timestamp": "2026-12-01T00:00:00.000Z"}
    old = [{**start, "runId": str(uuid.uuid4())} for _ in range(3)]
    store = EventStore(path)
    store.append(old, delivered=False)
    store.close()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another program writes the store for longer than 30 s
    timer = threading.Timer(HELD_S, lambda: holder.execute("ROLLBACK"))
    timer.start()
    try:
        send_to(lunary_server, path, retry_timeout=60.0, exit_timeout=10.0)
        lunatrace.trace(name="new")(print)("new")
        assert lunary_server.wait_for(5, timeout=HELD_S + 20)
        assert lunatrace.flush(20)
    finally:
        timer.join()
        holder.close()
    received = [e["runId"] for e in lunary_server.events]
    assert sorted(received[2:]) == sorted(e["runId"] for e in old)  # after the live run's 2
    assert EventStore(path).count_pending() == 0
