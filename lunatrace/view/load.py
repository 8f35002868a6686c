"""Reading traces back from the local store, by id, id prefix, or the latest one."""

from __future__ import annotations

from pathlib import Path

from lunatrace.core.transport.store import EventStore, open_existing
from lunatrace.view.model import Trace, build_trace


class TraceNotFound(LookupError):
    """No trace matches; the message says why and what to do."""


def resolve_trace_id(store: EventStore, trace_id: str | None) -> str:
    """The full id for ``trace_id`` (a full id or a unique prefix), or the latest trace's."""
    if trace_id is None:
        latest = store.latest_trace_id()
        if latest is None:
            raise TraceNotFound(f"no traces in {store.path} yet: run traced code (or `lunatrace demo`) first")
        return latest
    matches = store.find_trace(trace_id)
    if not matches:
        raise TraceNotFound(f"no trace {trace_id!r} in {store.path}")
    if len(matches) > 1 and trace_id not in matches:
        raise TraceNotFound(f"{trace_id!r} matches several traces; give more of the id")
    return trace_id if trace_id in matches else matches[0]


def load_trace(store: EventStore | Path, trace_id: str | None = None) -> Trace:
    """The trace ``trace_id`` (default: the latest) from a store or a store file.

    Raises :class:`TraceNotFound`, or ``StoreError`` when the file is not a store (a
    missing file is not created: reading must not leave an empty store behind).
    """
    opened = store if isinstance(store, EventStore) else open_existing(store)
    try:
        full_id = resolve_trace_id(opened, trace_id)
        return build_trace(opened.trace_events(full_id), full_id)
    finally:
        if opened is not store:
            opened.close()
