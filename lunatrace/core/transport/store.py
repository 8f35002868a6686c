"""The local event store: one SQLite file holding wire events and a per-trace summary.

It is both the embedded default (no project key: every event lands here, browsable
offline) and the spool of the HTTP sink (events the server could not take wait here, in
their original order, until they can be re-sent). Several processes may write the same
file at once: WAL mode, a busy timeout and ``BEGIN IMMEDIATE`` transactions make each
append atomic, so a run is always filed under its parent's trace.

Each event row keeps the exact wire JSON plus the indexed columns needed to list traces
and assemble them; the ``traces`` table is maintained on append so listing stays cheap,
and so is ``trace_text``, the full-text index (SQLite's FTS5) that search reads.

The schema has a version (``PRAGMA user_version``). A store written by an older release is
migrated in place when opened: new columns and tables are added in one short write
transaction, and the events it already holds are indexed afterwards in small ones
(:meth:`EventStore.index_pending`), so other processes writing the store meanwhile wait
milliseconds, not the whole migration. Nothing is rewritten or dropped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lunatrace.core.timestamps import format_timestamp, parse_timestamp
from lunatrace.core.transport.trace_index import TEXT_ROW_BITS, facts_of, fts5_available, search_table_sql

logger = logging.getLogger("lunatrace")

# Delivery state of a stored event.
DELIVERED = 0
SPOOLED = 1  # the server could not take it; re-sent automatically
LOCAL = 2  # recorded with no server configured; uploaded only by ``lunatrace push``
DAMAGED = 3  # its body is not an event (a damaged file): set aside, never sent

BUSY_TIMEOUT_MS = 30_000
OPEN_RETRY_S = 0.02
SCHEMA_VERSION = 1
INDEX_CHUNK = 2_000  # events indexed per transaction when migrating: a short write lock each
SCAN_ABOVE = 2_000  # a search matching more traces is listed by walking the list (see list_traces)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    parent_run_id TEXT,
    trace_id TEXT NOT NULL,
    type TEXT,
    name TEXT,
    event TEXT,
    status TEXT,
    ts_ms INTEGER,
    tokens INTEGER NOT NULL DEFAULT 0,
    user_id TEXT,
    tags TEXT,
    state INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id);
CREATE INDEX IF NOT EXISTS events_trace ON events(trace_id, id);
CREATE INDEX IF NOT EXISTS events_state ON events(state, id);
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,  -- row id of the trace's first event: the order of arrival
    name TEXT,
    type TEXT,
    status TEXT NOT NULL DEFAULT 'started',
    started_ms INTEGER,
    ended_ms INTEGER,
    llm_calls INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    user_id TEXT,
    tags TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS traces_recent ON traces(started_ms DESC, seq DESC);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires REAL NOT NULL
);
"""

# Version 1: what each trace was (previews, token split, cost) and the search index. An
# event row not yet indexed has ``indexed = 0``: every event of an older store, and any
# event an older release still writes into this one.
_VERSION_1 = """
ALTER TABLE traces ADD COLUMN input_preview TEXT;
ALTER TABLE traces ADD COLUMN output_preview TEXT;
ALTER TABLE traces ADD COLUMN prompt_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE traces ADD COLUMN completion_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE traces ADD COLUMN cost REAL;
ALTER TABLE traces ADD COLUMN cost_estimated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE traces ADD COLUMN text_rows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN indexed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS events_unindexed ON events(id) WHERE indexed = 0;
CREATE INDEX IF NOT EXISTS traces_seq ON traces(seq)
"""


class StoreError(RuntimeError):
    """The store file cannot be opened or read; the message names the file.

    ``damaged`` says the file itself is broken (not a database, a malformed page), as
    opposed to a passing problem such as a lock or a permission.
    """

    def __init__(self, message: str, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged


def _is_damage(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text)


@dataclass
class TraceSummary:
    """One line of ``lunatrace traces``: a root run and totals over its whole tree."""

    trace_id: str
    name: str | None
    type: str | None
    status: str  # 'success' | 'error' | 'started'
    started_at: str | None
    ended_at: str | None
    duration_ms: float | None
    llm_calls: int
    tokens: int
    errors: int
    user_id: str | None
    tags: list[str] = field(default_factory=list)
    input_preview: str | None = None
    output_preview: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None  # USD: set by the application, or estimated (see ``cost_estimated``)
    cost_estimated: bool = False  # some of ``cost`` is an estimate from Lunary's price table


def iso(ms: int | None) -> str | None:
    return None if ms is None else format_timestamp(ms)


def event_tokens(event: dict[str, Any]) -> int:
    usage = event.get("tokensUsage")
    if not isinstance(usage, dict):
        return 0
    total = 0
    for key in ("prompt", "completion"):
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            total += value
    return total


def _status(event: str | None) -> str | None:
    return {"start": "started", "end": "success", "error": "error"}.get(event or "")


@dataclass
class _TraceDelta:
    """What one appended batch changes in a trace's summary, applied in a few statements."""

    seq: int
    first_ms: int | None
    root: tuple[Any, ...] | None = None  # name, type, started_ms, user_id, tags of the root start
    thread: tuple[Any, ...] | None = None  # user_id, last message time of a thread
    end: tuple[str | None, int | None] | None = None  # status, ended_ms of the root
    llm_calls: int = 0
    tokens: int = 0
    errors: int = 0

    def add(self, event: dict[str, Any], is_root: bool, ts: int | None, tokens: int) -> None:
        kind = event.get("event")
        if kind == "start" and is_root:
            tags = json.dumps([str(t) for t in event.get("tags") or []])
            self.root = (event.get("name"), event.get("type"), ts, event.get("userId"), tags)
        elif kind == "chat" and not is_root:
            self.thread = (event.get("userId"), ts)
        elif kind in ("end", "error") and is_root:
            self.end = (_status(kind), ts)
        if kind == "start" and event.get("type") == "llm":
            self.llm_calls += 1
        if kind == "error":
            self.errors += 1
        self.tokens += tokens

    def apply(self, db: sqlite3.Connection, trace: str) -> None:
        """One upsert: root fields replace, a thread fills gaps, an end sets the status."""
        name, run_type, started, user, tags = self.root or (None, None, self.first_ms, None, "[]")
        status, ended = self.end or ("started", None)
        if self.thread is not None and self.root is None:
            name, run_type, user = "thread", "thread", self.thread[0]
            status, ended = "success", self.thread[1]
        db.execute(
            _UPSERT_TRACE,
            {
                "trace": trace,
                "seq": self.seq,
                "name": name,
                "type": run_type,
                "status": status,
                "started": started,
                "ended": ended,
                "llm": self.llm_calls,
                "tokens": self.tokens,
                "errors": self.errors,
                "user": user,
                "tags": tags,
                "has_root": self.root is not None,
                "has_end": self.end is not None or self.thread is not None,
            },
        )


_UPSERT_TRACE = """
INSERT INTO traces (trace_id, seq, name, type, status, started_ms, ended_ms, llm_calls, tokens, errors,
                    user_id, tags)
VALUES (:trace, :seq, :name, :type, :status, :started, :ended, :llm, :tokens, :errors, :user, :tags)
ON CONFLICT(trace_id) DO UPDATE SET
    name = CASE WHEN :has_root THEN excluded.name ELSE COALESCE(traces.name, excluded.name) END,
    type = CASE WHEN :has_root THEN excluded.type ELSE COALESCE(traces.type, excluded.type) END,
    user_id = CASE WHEN :has_root THEN excluded.user_id ELSE COALESCE(traces.user_id, excluded.user_id) END,
    started_ms = CASE WHEN :has_root THEN excluded.started_ms
                      ELSE COALESCE(traces.started_ms, excluded.started_ms) END,
    tags = CASE WHEN :has_root THEN excluded.tags ELSE traces.tags END,
    status = CASE WHEN :has_end THEN excluded.status ELSE traces.status END,
    ended_ms = CASE WHEN :has_end THEN excluded.ended_ms ELSE traces.ended_ms END,
    llm_calls = traces.llm_calls + excluded.llm_calls,
    tokens = traces.tokens + excluded.tokens,
    errors = traces.errors + excluded.errors
"""


class EventStore:
    """A SQLite event store. Thread-safe (one connection behind a lock); multi-process safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self.damaged = 0  # rows set aside by this connection (see ``pending``)
        self._damage_reported = False
        self.search_mode: str | None = None  # 'fts5', 'like' (no FTS5 here), None: cannot search
        self._matches: dict[str, int] = {}  # search -> traces it last matched (see list_traces)
        try:
            _create_private(self.path)
            self._db = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._set_up()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the lunatrace store {self.path}: {exc}", _is_damage(exc)) from None

    def _set_up(self) -> None:
        """WAL mode and the schema, retried while another process holds the database.

        Switching a new database to WAL needs it alone, and SQLite answers "database is
        locked" at once rather than waiting: two programs starting together would
        otherwise find the store unusable. A store that already has its schema is opened
        with reads only, so another program writing it (holding its write lock) does not
        keep this one from reading what it holds, such as the events left to re-send.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                if not self._has_schema() or self._version() < SCHEMA_VERSION:
                    with self._transaction() as db:
                        self._migrate(db)
                self.search_mode = self._search_mode()
                return
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(OPEN_RETRY_S)

    def _has_schema(self) -> bool:
        names = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {"events", "traces", "leases"} <= names

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION`, inside the caller's write transaction
        (so a second process migrating at the same moment finds it done and does nothing).
        A new store is made as version 0 and migrated too: one path for both."""
        if not self._has_schema():
            for statement in _statements(_SCHEMA):
                db.execute(statement)
        if self._version() < 1:
            for statement in _statements(_VERSION_1):
                db.execute(statement)
            db.execute(search_table_sql(fts5_available(db)))
            db.execute("PRAGMA user_version = 1")

    def _search_mode(self) -> str | None:
        row = self._db.execute("SELECT sql FROM sqlite_master WHERE name = 'trace_text'").fetchone()
        if row is None:
            return None
        if "fts5" not in str(row[0]).lower():
            return "like"
        return "fts5" if fts5_available(self._db) else None  # made by a build with FTS5, read by one without

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"EventStore({str(self.path)!r})"

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locking) transaction, so concurrent appends serialise cleanly."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the lunatrace store {self.path}: {exc}", _is_damage(exc)) from None

    # --- writing ----------------------------------------------------------------------

    def append(self, events: list[dict[str, Any]], *, delivered: bool, local: bool = False) -> None:
        """Store wire events in order. ``delivered`` marks them sent; ``local`` marks events
        recorded with no server configured (uploaded only on request)."""
        state = DELIVERED if delivered else (LOCAL if local else SPOOLED)
        self.append_encoded([(e, json.dumps(e, separators=(",", ":"))) for e in events], state)

    def append_encoded(self, items: Sequence[tuple[dict[str, Any], str]], state: int) -> None:
        """Store ``(wire event, its JSON)`` pairs with delivery ``state``, in one transaction."""
        if not items:
            return
        try:
            with self._transaction() as db:
                self._insert(db, items, state)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the lunatrace store {self.path}: {exc}") from None

    def _insert(
        self, db: sqlite3.Connection, items: Sequence[tuple[dict[str, Any], str]], state: int
    ) -> None:
        """Insert a batch with one ``executemany``, then update each touched trace once."""
        traces: dict[str, str] = {}  # run id -> trace id, for runs seen in this batch
        deltas: dict[str, _TraceDelta] = {}
        rows: list[tuple[Any, ...]] = []
        next_id = int(db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM events").fetchone()[0])
        for index, (event, body) in enumerate(items):
            rid = str(event.get("runId", ""))
            parent = event.get("parentRunId")
            kind = event.get("event")
            if kind in ("start", "chat") and parent is not None:
                # A run belongs to its parent's trace; a thread message to its thread's.
                known = traces.get(str(parent)) or self._trace_of(db, str(parent))
                trace = known or (str(parent) if kind == "chat" else rid)
            elif kind == "start":
                trace = rid  # a root
            else:
                trace = traces.get(rid) or self._trace_of(db, rid) or rid
            traces[rid] = trace
            ts = parse_timestamp(event.get("timestamp"))
            tokens = event_tokens(event)
            tags = event.get("tags")
            rows.append(
                (
                    rid,
                    parent,
                    trace,
                    event.get("type"),
                    event.get("name"),
                    kind,
                    _status(kind),
                    ts,
                    tokens,
                    event.get("userId"),
                    json.dumps(tags) if tags else None,
                    state,
                    body,
                )
            )
            if kind in ("start", "end", "error", "chat"):
                delta = deltas.get(trace)
                if delta is None:
                    delta = deltas[trace] = _TraceDelta(seq=next_id + index, first_ms=ts)
                delta.add(event, rid == trace, ts, tokens)
        db.executemany(
            "INSERT INTO events (run_id, parent_run_id, trace_id, type, name, event, status, ts_ms,"
            " tokens, user_id, tags, state, body, indexed) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,1)",
            rows,
        )
        for trace, delta in deltas.items():
            delta.apply(db, trace)
        self._index(db, [(event, row[2]) for (event, _), row in zip(items, rows, strict=True)])

    def _index(self, db: sqlite3.Connection, events: list[tuple[dict[str, Any], str]]) -> None:
        """Add ``(event, trace id)`` pairs to their traces' previews, token split, cost and
        search text; a run's start comes from the same pairs, else from the store."""
        starts = {str(e.get("runId")): e for e, _ in events if e.get("event") == "start"}

        def start_of(run_id: str) -> dict[str, Any] | None:
            return starts.get(run_id) or self._start_of(db, run_id)

        for trace, facts in facts_of(events, start_of).items():
            facts.apply(db, trace, with_text=self.search_mode is not None)

    @staticmethod
    def _start_of(db: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
        row = db.execute(
            "SELECT id, body FROM events WHERE run_id = ? AND event = 'start' ORDER BY id LIMIT 1", (run_id,)
        ).fetchone()
        parsed = _parse_rows([row])[0] if row else []
        return parsed[0][1] if parsed else None

    def index_pending(self, chunk: int = INDEX_CHUNK) -> int:
        """Index the events not indexed yet (a store written by an older release), a chunk
        per transaction; how many were indexed. Readers call it on open (see
        :func:`open_existing`): it is a no-op once done, and safe to run in several
        processes at once (each chunk is claimed inside its write transaction)."""
        done = 0
        try:
            left = int(self._query("SELECT COUNT(*) FROM events WHERE indexed = 0")[0][0])
            if not left:
                return 0  # read only: checking takes no write lock
            if left > chunk:  # seconds, not milliseconds: say why the command waits
                logger.warning(
                    "lunatrace: indexing %d event(s) of %s for search, previews and costs (once: the store "
                    "was written by an older release)...",
                    left,
                    self.path,
                )
            while True:
                with self._transaction() as db:
                    rows = db.execute(
                        "SELECT id, trace_id, body FROM events WHERE indexed = 0 ORDER BY id LIMIT ?",
                        (chunk,),
                    ).fetchall()
                    if not rows:
                        return done
                    traces = {int(row_id): str(trace) for row_id, trace, _ in rows}
                    events, _ = _parse_rows([(row_id, body) for row_id, _, body in rows])
                    self._index(db, [(event, traces[row_id]) for row_id, event in events])
                    db.execute("UPDATE events SET indexed = 1 WHERE indexed = 0 AND id <= ?", (rows[-1][0],))
                done += len(rows)
        except sqlite3.Error as exc:
            message = f"cannot index the lunatrace store {self.path}: {exc}"
            raise StoreError(message, _is_damage(exc)) from None

    @staticmethod
    def _trace_of(db: sqlite3.Connection, run_id: str) -> str | None:
        row = db.execute("SELECT trace_id FROM events WHERE run_id = ? LIMIT 1", (run_id,)).fetchone()
        return str(row[0]) if row else None

    # --- delivery state ---------------------------------------------------------------

    def pending(self, limit: int, *, include_local: bool = True) -> list[tuple[int, dict[str, Any]]]:
        """The oldest undelivered events, in stored order, as ``(row id, wire event)``.

        A row whose body is not an event (the file was damaged) is set aside as
        ``DAMAGED`` and counted in :attr:`damaged`, so it never stops the rows after it.
        """
        states = (SPOOLED, LOCAL) if include_local else (SPOOLED,)
        rows = self._query(
            f"SELECT id, body FROM events WHERE state IN ({','.join('?' * len(states))}) ORDER BY id LIMIT ?",
            (*states, limit),
        )
        events, damaged = _parse_rows(rows)
        if damaged:
            self._set_aside(damaged)
        return events

    def _set_aside(self, ids: list[int]) -> None:
        try:
            with self._transaction() as db:
                db.execute(
                    f"UPDATE events SET state = {DAMAGED} WHERE id IN ({','.join('?' * len(ids))})", ids
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the lunatrace store {self.path}: {exc}") from None
        self.damaged += len(ids)
        if not self._damage_reported:
            self._damage_reported = True
            logger.error(
                "lunatrace: %d damaged event(s) in %s could not be read; they are set aside (not sent) "
                "and the rest is delivered. `lunatrace doctor` counts them.",
                len(ids),
                self.path,
            )

    def count_pending(self, *, include_local: bool = True) -> int:
        states = (SPOOLED, LOCAL) if include_local else (SPOOLED,)
        rows = self._query(
            f"SELECT COUNT(*) FROM events WHERE state IN ({','.join('?' * len(states))})", states
        )
        return int(rows[0][0])

    def mark_delivered(self, ids: list[int]) -> None:
        if not ids:
            return
        try:
            with self._transaction() as db:
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    db.execute(
                        f"UPDATE events SET state = {DELIVERED} WHERE id IN ({','.join('?' * len(chunk))})",
                        chunk,
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the lunatrace store {self.path}: {exc}") from None

    def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take (or renew) a named lease for ``ttl`` seconds unless another owner holds it.

        Uploading the spool holds one, so two processes never send the same events. A
        lease whose owner is a process of this machine that no longer exists (it exited,
        or was killed, while uploading) is taken over at once rather than when it expires.
        """
        now = time.time()
        try:
            with self._transaction() as db:
                row = db.execute("SELECT owner, expires FROM leases WHERE name = ?", (name,)).fetchone()
                if row is not None and row[0] != owner and row[1] > now and not owner_gone(row[0]):
                    return False
                db.execute(
                    "INSERT INTO leases (name, owner, expires) VALUES (?, ?, ?) ON CONFLICT(name)"
                    " DO UPDATE SET owner = excluded.owner, expires = excluded.expires",
                    (name, owner, now + ttl),
                )
                return True
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the lunatrace store {self.path}: {exc}") from None

    def release_lease(self, name: str, owner: str) -> None:
        try:
            with self._transaction() as db:
                db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))
        except sqlite3.Error:
            pass

    # --- reading ----------------------------------------------------------------------

    def _filters(self, filters: Mapping[str, Any], scan: bool = False) -> tuple[str, list[Any]]:
        """The ``WHERE`` clause of :data:`FILTERS` given by keyword: equality on ``name``,
        ``type``, ``status``, ``user``; a root tag; ``search`` (every word somewhere in the
        trace); ``since_ms``/``until_ms`` (start time, until exclusive); ``errors`` (only
        traces with an error). ``scan``: match a search while walking the list in order
        rather than looking each match up (see :meth:`list_traces`)."""
        unknown = set(filters) - set(FILTERS)
        if unknown:
            raise TypeError(f"unknown trace filter(s): {', '.join(sorted(unknown))}")
        clauses, params = [], []
        for key, column in (("name", "name"), ("type", "type"), ("status", "status"), ("user", "user_id")):
            if filters.get(key) is not None:
                clauses.append(f"{column} = ?")
                params.append(filters[key])
        if filters.get("tag") is not None:
            clauses.append("EXISTS (SELECT 1 FROM json_each(traces.tags) WHERE json_each.value = ?)")
            params.append(filters["tag"])
        if filters.get("since_ms") is not None:
            clauses.append("started_ms >= ?")
            params.append(int(filters["since_ms"]))
        if filters.get("until_ms") is not None:
            clauses.append("started_ms < ?")
            params.append(int(filters["until_ms"]))
        if filters.get("errors"):
            clauses.append("(errors > 0 OR status = 'error')")
        for term in search_terms(filters.get("search") or ""):
            clauses.append(("+" if scan else "") + self._search_clause())
            params.append(_fts_term(term) if self.search_mode == "fts5" else _like_term(term))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _search_clause(self) -> str:
        if self.search_mode == "fts5":
            return f"seq IN (SELECT rowid >> {TEXT_ROW_BITS} FROM trace_text WHERE trace_text MATCH ?)"
        if self.search_mode == "like":
            return f"seq IN (SELECT rowid >> {TEXT_ROW_BITS} FROM trace_text WHERE body LIKE ? ESCAPE '\\')"
        raise StoreError(
            f"cannot search {self.path}: its search index needs SQLite's FTS5 module, which this Python's "
            f"SQLite ({sqlite3.sqlite_version}) lacks"
        )

    def list_traces(self, limit: int = 20, offset: int = 0, **filters: Any) -> list[TraceSummary]:
        """The most recent traces first (by start time), with totals over each tree;
        ``filters`` as :meth:`_filters` reads them.

        A search matching few traces is fastest looking each one up (the ``seq`` index)
        and sorting them; one matching thousands, walking the list newest first until the
        page is full (sorting them all costs more). How many match decides: the count a
        page asks for first (:meth:`count_traces`) is remembered for that.
        """
        search = filters.get("search")
        matches = self._matches.get(str(search)) if search else None
        if search and matches is None:
            matches = self.count_traces(**filters)
        where, params = self._filters(filters, scan=matches is not None and matches > SCAN_ABOVE)
        rows = self._query(
            f"SELECT {_SUMMARY_COLUMNS} FROM traces{where}"
            " ORDER BY started_ms DESC, seq DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [_summary(row) for row in rows]

    def count_traces(self, **filters: Any) -> int:
        where, params = self._filters(filters)
        count = int(self._query(f"SELECT COUNT(*) FROM traces{where}", params)[0][0])
        if filters.get("search"):
            if len(self._matches) > 64:
                self._matches.clear()
            self._matches[str(filters["search"])] = count  # a hint for the list's plan, never its answer
        return count

    def trace_events(self, trace_id: str) -> list[dict[str, Any]]:
        """Every readable wire event of a trace, in stored order (empty if the trace is
        unknown); :meth:`damaged_in` counts the rows that could not be read."""
        rows = self._query("SELECT id, body FROM events WHERE trace_id = ? ORDER BY id", (trace_id,))
        return [event for _, event in _parse_rows(rows)[0]]

    def damaged_in(self, trace_id: str) -> int:
        """How many rows of a trace are damaged (set aside, or not yet found out), counted
        by SQLite itself: the trace's page must not parse every event twice."""
        rows = self._query(
            "SELECT COUNT(*) FROM events WHERE trace_id = ? AND (state = ? OR"
            " CASE WHEN json_valid(body) THEN json_type(body) != 'object' ELSE 1 END)",
            (trace_id, DAMAGED),
        )
        return int(rows[0][0])

    def find_traces(self, prefix: str, limit: int = 2) -> list[TraceSummary]:
        """The traces whose id starts with ``prefix``, most recent first (at most ``limit``:
        two tell unique from ambiguous)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._query(
            f"SELECT {_SUMMARY_COLUMNS} FROM traces WHERE trace_id LIKE ? ESCAPE '\\'"
            " ORDER BY started_ms DESC, seq DESC LIMIT ?",
            (escaped + "%", limit),
        )
        return [_summary(row) for row in rows]

    def latest_trace_id(self, back: int = 0) -> str | None:
        """The most recent trace's id, or the one ``back`` traces before it."""
        rows = self._query(
            "SELECT trace_id FROM traces ORDER BY started_ms DESC, seq DESC LIMIT 1 OFFSET ?", (back,)
        )
        return str(rows[0][0]) if rows else None

    def stats(self) -> dict[str, Any]:
        """Size on disk and event counts by delivery state."""
        counts = dict.fromkeys(("delivered", "spooled", "local", "damaged"), 0)
        names = {DELIVERED: "delivered", SPOOLED: "spooled", LOCAL: "local", DAMAGED: "damaged"}
        for state, count in self._query("SELECT state, COUNT(*) FROM events GROUP BY state"):
            counts[names.get(int(state), "delivered")] += int(count)
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += os.path.getsize(str(self.path) + suffix)
            except OSError:
                pass
        return {
            "path": str(self.path),
            "size_bytes": size,
            "events": sum(counts.values()),
            "traces": self.count_traces(),
            "pending": counts["spooled"] + counts["local"],
            **counts,
        }


_WARNED_OPEN: set[Path] = set()


def _create_private(path: Path) -> None:
    """Create the store's folder (0700) and file (0600) readable by their owner only.

    The store holds prompts and answers. SQLite gives its ``-wal`` and ``-shm`` files the
    database file's permissions, so creating the file first covers them too. A store
    that already exists is left as it is, with one warning if others can read it.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return
    except FileExistsError:
        pass
    mode = path.stat().st_mode & 0o777
    if mode & 0o077 and path not in _WARNED_OPEN:
        _WARNED_OPEN.add(path)
        logger.warning(
            "lunatrace: the store %s is readable by other users (mode %o); it holds your prompts and "
            "answers: chmod 600 %s",
            path,
            mode,
            path,
        )


def lease_owner(tag: str) -> str:
    """A lease owner naming this process: ``host:pid:tag`` (see :func:`owner_gone`)."""
    return f"{socket.gethostname()}:{os.getpid()}:{tag}"


def owner_gone(owner: str) -> bool:
    """Whether a lease's owner was a process of this machine that has since ended."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine's (a shared disk), or an unknown form: wait for expiry
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (owned by another user)
    return False


def set_aside(path: Path) -> Path:
    """Move a damaged store (and its WAL files) out of the way; return its new name.

    Its events stay there for whoever wants to recover them; a new store is then made
    in its place, so a broken file does not cost every later event.
    """
    kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(path) + suffix)
        if source.exists():
            os.replace(source, str(kept) + suffix)
    return kept


def open_existing(path: Path) -> EventStore:
    """The store at ``path`` for reading, its events all indexed (a store an older release
    wrote is indexed here, once); :class:`StoreError` if there is none yet (reading must
    not leave an empty store behind)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise StoreError(f"no lunatrace store at {path} yet: run traced code first")
    store = EventStore(path)
    try:
        store.index_pending()
    except StoreError:
        store.close()
        raise
    return store


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


# Python reads NaN and Infinity, which are not JSON: lunatrace never writes them (they are
# strings on the wire), and a row holding one could not be sent again.
_DECODER = json.JSONDecoder(parse_constant=_not_json)


def _parse_rows(rows: Sequence[Any]) -> tuple[list[tuple[int, dict[str, Any]]], list[int]]:
    """``(row id, event)`` for rows whose body is a JSON object; the ids of the others."""
    events: list[tuple[int, dict[str, Any]]] = []
    damaged: list[int] = []
    for row_id, body in rows:
        try:
            event = _DECODER.decode(body)
        except (TypeError, ValueError):
            event = None
        if isinstance(event, dict):
            events.append((int(row_id), event))
        else:
            damaged.append(int(row_id))
    return events, damaged


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


FILTERS = ("name", "type", "status", "user", "tag", "search", "since_ms", "until_ms", "errors")
_SUMMARY_COLUMNS = (
    "trace_id, name, type, status, started_ms, ended_ms, llm_calls, tokens, errors, user_id, tags,"
    " input_preview, output_preview, prompt_tokens, completion_tokens, cost, cost_estimated"
)
_WORD = re.compile(r'"([^"]*)"|(\S+)')


def search_terms(text: str) -> list[str]:
    """The words of a search, a ``"quoted phrase"`` kept whole; words with no letter or
    digit (which the index does not hold) are left out."""
    terms = [quoted or bare for quoted, bare in _WORD.findall(text)]
    return [t for t in terms if any(ch.isalnum() for ch in t)]


def _fts_term(term: str) -> str:
    """An FTS5 query for one term as a phrase, its last word a prefix (``refund`` finds
    ``refunds``): quoted, so no word of it is read as an operator."""
    return '"' + term.replace('"', '""') + '"*'


def _like_term(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _summary(row: Sequence[Any]) -> TraceSummary:
    trace_id, name, run_type, status, started, ended, llm_calls, tokens, errors, user_id, tags = row[:11]
    input_preview, output_preview, prompt_tokens, completion_tokens, cost, cost_estimated = row[11:]
    duration = float(ended - started) if started is not None and ended is not None else None
    try:
        tag_list = [str(t) for t in json.loads(tags or "[]")]
    except ValueError:
        tag_list = []
    return TraceSummary(
        trace_id=str(trace_id),
        name=name,
        type=run_type,
        status=str(status),
        started_at=iso(started),
        ended_at=iso(ended),
        duration_ms=duration,
        llm_calls=int(llm_calls),
        tokens=int(tokens),
        errors=int(errors),
        user_id=user_id,
        tags=tag_list,
        input_preview=input_preview,
        output_preview=output_preview,
        prompt_tokens=int(prompt_tokens),
        completion_tokens=int(completion_tokens),
        cost=None if cost is None else float(cost),
        cost_estimated=bool(cost_estimated),
    )
