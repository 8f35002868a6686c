"""A store as the previous release leaves it (schema version 0), for the migration's tests
and benchmark."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def as_previous_release(path: Path) -> None:
    """Take a store back to schema version 0: exactly the tables and columns the previous
    release creates, with what it writes in them (its summary columns are unchanged)."""
    db = sqlite3.connect(path)
    for column in ("input_preview", "output_preview", "prompt_tokens", "completion_tokens", "cost",
                   "cost_estimated", "text_rows"):  # fmt: skip
        db.execute(f"ALTER TABLE traces DROP COLUMN {column}")
    db.execute("DROP INDEX events_unindexed")
    db.execute("ALTER TABLE events DROP COLUMN indexed")
    db.execute("DROP TABLE trace_text")
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()
