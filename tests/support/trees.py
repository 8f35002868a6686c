"""Checks that a list of wire events forms valid run trees, as the server needs them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

END_EVENTS = ("end", "error")


def run_events(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The start/end/error events (threads, feedback and other kinds left out)."""
    return [e for e in events if e.get("event") in ("start", *END_EVENTS)]


def starts(events: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["runId"]: e for e in events if e.get("event") == "start"}


def assert_valid_tree(events: Sequence[dict[str, Any]], *, allow_parents: Sequence[str] = ()) -> None:
    """Each run: one start, then exactly one end or error; parents start before children;
    no parent id that was never started (unless listed in ``allow_parents``, e.g. thread
    messages); llm ends say ``type: "llm"``; timestamps never decrease.
    """
    seen_start: dict[str, int] = {}
    finished: dict[str, str] = {}
    last_ts = ""
    for index, event in enumerate(events):
        ts = event.get("timestamp", "")
        assert ts >= last_ts, f"timestamp went backwards at #{index}: {ts} < {last_ts}"
        last_ts = ts
        kind, rid = event.get("event"), event.get("runId")
        if kind == "start":
            assert rid not in seen_start, f"second start for {rid}"
            parent = event.get("parentRunId")
            if parent is not None and parent not in allow_parents:
                assert parent in seen_start, f"run {rid} ({event.get('name')}) starts before parent {parent}"
            seen_start[rid] = index
        elif kind in END_EVENTS:
            assert rid in seen_start, f"{kind} before start for {rid}"
            assert rid not in finished, f"run {rid} finished twice ({finished.get(rid)} and {kind})"
            finished[rid] = kind
            if events[seen_start[rid]].get("type") == "llm":
                assert event.get("type") == "llm", "an llm end must say type llm"
    unfinished = set(seen_start) - set(finished)
    assert not unfinished, f"runs never ended: {[starts(events)[r].get('name') for r in unfinished]}"


def children(events: Sequence[dict[str, Any]], parent_id: str | None) -> list[dict[str, Any]]:
    """Start events whose parent is ``parent_id`` (``None``: roots), in order."""
    return [e for e in events if e.get("event") == "start" and e.get("parentRunId") == parent_id]


def by_name(events: Sequence[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == "start" and e.get("name") == name]


def end_of(events: Sequence[dict[str, Any]], run_id: str) -> dict[str, Any]:
    matches = [e for e in events if e.get("runId") == run_id and e.get("event") in END_EVENTS]
    assert len(matches) == 1, f"expected one end/error for {run_id}, got {len(matches)}"
    return matches[0]
