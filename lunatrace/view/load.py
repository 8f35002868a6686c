"""Reading traces back from the local store, by id, id prefix, or the latest one."""

from __future__ import annotations

import re
from pathlib import Path

from lunatrace.core.transport.store import EventStore, open_existing
from lunatrace.view.model import Trace, build_trace


class TraceNotFound(LookupError):
    """No trace matches; the message says why and what to do."""


CANDIDATES = 10
_BACK = re.compile(r"-[1-9][0-9]*")


def resolve_trace_id(store: EventStore, trace_id: str | None) -> str:
    """The full id for ``trace_id``: a full id, a unique prefix, ``-1`` (the latest trace),
    ``-2`` (the one before)...; ``None``: the latest. An ambiguous prefix lists the traces
    it matches, most recent first."""
    if trace_id is None or _BACK.fullmatch(trace_id):
        back = 0 if trace_id is None else int(trace_id[1:]) - 1
        found = store.latest_trace_id(back)
        if found is None:
            if back == 0:
                raise TraceNotFound(
                    f"no traces in {store.path} yet: run traced code (or `lunatrace demo`) first"
                )
            raise TraceNotFound(f"{store.path} has fewer than {back + 1} traces")
        return found
    matches = store.find_traces(trace_id, CANDIDATES + 1)
    ids = [summary.trace_id for summary in matches]
    if not matches:
        raise TraceNotFound(f"no trace {trace_id!r} in {store.path}")
    if trace_id in ids or len(matches) == 1:
        return trace_id if trace_id in ids else ids[0]
    shown = "\n".join(f"  {m.trace_id}  {m.name or '-'}  {m.started_at or '-'}" for m in matches[:CANDIDATES])
    more = f"\n  ... and more (at least {len(matches)})" if len(matches) > CANDIDATES else ""
    raise TraceNotFound(
        f"{trace_id!r} matches several traces, most recent first:\n{shown}{more}\n"
        "Give more of the id, or -1 for the latest, -2 for the one before."
    )


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
