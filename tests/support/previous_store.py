"""A store as the previous release leaves it (schema version 0), for the migration's tests
and benchmark."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

BASE_MS = 1_780_000_000_000  # 2026-05-28


def as_previous_release(path: Path) -> None:
    """Take a store back to schema version 0: exactly the tables and columns the previous
    release creates, with what it writes in them (its summary columns are unchanged)."""
    db = sqlite3.connect(path)
    for column in ("input_preview", "output_preview", "prompt_tokens", "completion_tokens", "cost",
                   "cost_estimated", "text_rows"):  # fmt: skip
        db.execute(f"ALTER TABLE traces DROP COLUMN {column}")
    db.execute("DROP INDEX events_unindexed")
    db.execute("DROP INDEX traces_seq")
    db.execute("ALTER TABLE events DROP COLUMN indexed")
    db.execute("DROP TABLE trace_text")
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()


def previous_release_append(path: Path, event: dict[str, Any]) -> None:
    """A root start written the way the previous release writes it (no ``indexed`` column)."""
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO events (run_id, parent_run_id, trace_id, type, name, event, status, ts_ms, tokens,"
        " user_id, tags, state, body) VALUES (?, NULL, ?, ?, ?, 'start', 'started', ?, 0, NULL, NULL, 2, ?)",
        (event["runId"], event["runId"], event["type"], event["name"], BASE_MS, json.dumps(event)),
    )
    db.execute(
        "INSERT INTO traces (trace_id, seq, name, type, started_ms) VALUES (?, last_insert_rowid(), ?, ?, ?)",
        (event["runId"], event["name"], event["type"], BASE_MS),
    )
    db.commit()
    db.close()
