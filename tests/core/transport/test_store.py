"""The SQLite store: traces assembled from wire events, delivery state, several writers."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from lunatrace.core.transport.store import EventStore, StoreError


def _id() -> str:
    return str(uuid.uuid4())


def _ts(ms: int) -> str:
    return f"2026-01-01T00:00:{ms // 1000:02d}.{ms % 1000:03d}Z"


def _run(kind: str, run_type: str, rid: str, ms: int, **extra: Any) -> dict[str, Any]:
    return {"type": run_type, "event": kind, "runId": rid, "timestamp": _ts(ms), **extra}


def _agent_trace(root: str, llm: str, tool: str) -> list[dict[str, Any]]:
    return [
        _run("start", "agent", root, 0, name="planner", userId="u1", tags=["beta"]),
        _run("start", "llm", llm, 10, name="gpt-4o", parentRunId=root),
        _run("end", "llm", llm, 200, tokensUsage={"prompt": 30, "completion": 12}),
        _run("start", "tool", tool, 210, name="search", parentRunId=root),
        _run("error", "tool", tool, 300, error={"message": "boom", "stack": ""}),
        _run("end", "agent", root, 1500),
    ]


def test_a_trace_is_summarised_over_its_whole_tree(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    root, llm, tool = _id(), _id(), _id()
    events = _agent_trace(root, llm, tool)
    store.append(events[:3], delivered=False)  # parents found across appends too
    store.append(events[3:], delivered=False)
    [summary] = store.list_traces()
    assert (summary.trace_id, summary.name, summary.type, summary.status) == (
        root,
        "planner",
        "agent",
        "success",
    )
    assert (summary.llm_calls, summary.tokens, summary.errors) == (1, 42, 1)
    assert summary.started_at == "2026-01-01T00:00:00.000Z"
    assert summary.duration_ms == 1500.0
    assert (summary.user_id, summary.tags) == ("u1", ["beta"])
    assert store.trace_events(root) == events
    assert store.latest_trace_id() == root


def test_unfinished_and_failed_roots_and_filters(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    open_root, failed_root = _id(), _id()
    store.append(
        [
            _run("start", "chain", open_root, 0, name="open"),
            _run("start", "tool", failed_root, 5, name="fails", userId="u2", tags=["x"]),
            _run("error", "tool", failed_root, 9, error={"message": "e", "stack": ""}),
        ],
        delivered=True,
    )
    assert [t.status for t in store.list_traces()] == ["error", "started"]
    assert store.list_traces()[1].ended_at is None and store.list_traces()[1].duration_ms is None
    assert [t.trace_id for t in store.list_traces(status="started")] == [open_root]
    assert [t.trace_id for t in store.list_traces(user="u2")] == [failed_root]
    assert [t.trace_id for t in store.list_traces(tag="x")] == [failed_root]
    assert store.count_traces(type="chain") == 1 and store.count_traces(name="nope") == 0
    assert [t.trace_id for t in store.list_traces(limit=1, offset=1)] == [open_root]


def test_unknown_parent_makes_a_root_and_thread_messages_share_a_trace(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    orphan, thread, message, agent = _id(), _id(), _id(), _id()
    store.append(
        [
            _run("start", "chain", orphan, 0, parentRunId=_id(), name="orphan"),
            {
                "type": "thread",
                "event": "chat",
                "runId": message,
                "parentRunId": thread,
                "timestamp": _ts(1),
                "message": {"role": "user", "content": "hi"},
            },
            _run("start", "agent", agent, 2, parentRunId=message, name="answer"),
        ],
        delivered=False,
    )
    assert {t.trace_id for t in store.list_traces()} == {orphan, thread}
    assert [e["runId"] for e in store.trace_events(thread)] == [message, agent]


def test_pending_events_come_back_in_order_until_delivered(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    spooled = [_run("start", "chain", _id(), i) for i in range(5)]
    store.append(spooled[:2], delivered=False)
    store.append([_run("start", "chain", _id(), 9)], delivered=True)
    store.append(spooled[2:], delivered=False, local=True)
    pending = store.pending(10)
    assert [e for _, e in pending] == spooled
    assert [e for _, e in store.pending(10, include_local=False)] == spooled[:2]
    store.mark_delivered([row for row, _ in pending[:3]])
    assert [e for _, e in store.pending(10)] == spooled[3:]
    assert store.stats()["pending"] == 2 and store.stats()["delivered"] == 4


def test_a_lease_excludes_other_owners_until_released(tmp_path: Path) -> None:
    store, other = EventStore(tmp_path / "events.db"), EventStore(tmp_path / "events.db")
    assert store.acquire_lease("push", "a", 60)
    assert not other.acquire_lease("push", "b", 60)
    store.release_lease("push", "a")
    assert other.acquire_lease("push", "b", 60)


def test_a_file_that_is_not_a_store_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=str(path)):
        EventStore(path)


def _write_many(path: str, tag: str) -> None:
    store = EventStore(Path(path))
    for i in range(200):
        root = str(uuid.uuid4())
        store.append(
            [_run("start", "chain", root, i, name=tag), _run("end", "chain", root, i + 1)], delivered=False
        )


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "events.db")
    EventStore(Path(path))
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_write_many, args=(path, tag)) for tag in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    store = EventStore(Path(path))
    assert store.count_traces(name="a") == 200 and store.count_traces(name="b") == 200
    assert store.count_traces(status="success") == 400
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _open_store(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        EventStore(Path(path)).append([], delivered=False)
        results.put("ok")
    except StoreError as exc:
        results.put(str(exc))


def test_programs_opening_a_new_store_at_the_same_moment_all_get_it(tmp_path: Path) -> None:
    # Switching a new database to WAL needs it alone, and SQLite refuses at once rather
    # than waiting; unhandled, about one open in ten failed here.
    context = multiprocessing.get_context("fork")
    outcomes = []
    for attempt in range(25):
        path = tmp_path / str(attempt) / "events.db"
        barrier, results = context.Barrier(2), context.Queue()
        workers = [context.Process(target=_open_store, args=(str(path), barrier, results)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        outcomes += [results.get(timeout=5) for _ in workers]
    assert outcomes == ["ok"] * 50


def test_a_new_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual default, under which files come out 0644
    try:
        path = tmp_path / "home" / ".lunatrace" / "events.db"
        store = EventStore(path)
        store.append([{"type": "chain", "event": "start", "runId": "r", "timestamp": "x"}], delivered=False)
        modes = {p.name: p.stat().st_mode & 0o777 for p in path.parent.iterdir()}
    finally:
        os.umask(old)
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert modes == {"events.db": 0o600, "events.db-wal": 0o600, "events.db-shm": 0o600}


def test_an_existing_store_others_can_read_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.db"
    EventStore(path).close()
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="lunatrace"):
        EventStore(path).close()
        EventStore(path).close()
    assert caplog.text.count("readable by other users") == 1
    assert "chmod 600" in caplog.text
