"""Re-sending the store's undelivered events, oldest first: the worker's spool, and
``lunatrace push``.

Both follow the rules of live delivery (order, one request at a time, retries, 413
splits, a duplicate start on a re-sent event counts as delivered) and mark each delivered
batch in the store at once, so an interrupted upload resumes where it stopped and
nothing is sent twice. A lease in the store keeps two of them (two processes sharing a
store, or a process and ``push``) from sending the same events.
"""

from __future__ import annotations

import time

from lunatrace.core.config import Config
from lunatrace.core.transport.batch import Item, split_batches
from lunatrace.core.transport.sender import Sender
from lunatrace.core.transport.store import EventStore

SPOOL_LEASE = "spool"


def lease_ttl(config: Config) -> float:
    """How long a lease holds without being renewed: longer than one batch can take
    (its retries, then its answer), so it is never taken over while in use."""
    return 2 * config.retry_timeout + 60


def resend(store: EventStore, sender: Sender, owner: str, *, include_local: bool) -> bool | None:
    """Send ``store``'s undelivered events through ``sender``, oldest first, under the lease.

    ``include_local``: events recorded with no server configured too (``push``), not only
    the spooled ones. Rows that are not events (a damaged file) are set aside and counted
    as invalid. Returns ``True`` once none are left; ``False`` if a batch could not be
    delivered (``sender.disabled`` says when that is for good) or the sender was stopped;
    ``None`` if another process holds the lease.
    """
    config = sender.config
    ttl = lease_ttl(config)
    if not store.acquire_lease(SPOOL_LEASE, owner, ttl):
        return None

    def mark(items: list[Item]) -> bool:
        store.mark_delivered([item.row for item in items if item.row is not None])
        return True

    try:
        while not sender.stop.is_set():
            seen = store.damaged
            rows = store.pending(config.batch_max_events, include_local=include_local)
            sender.counters.failed_invalid += store.damaged - seen
            if not rows:
                return True
            items = [Item.stored(row, wire) for row, wire in rows]
            for batch in split_batches(items, config.batch_max_events, config.batch_max_bytes):
                deadline = time.monotonic() + config.retry_timeout
                if sender.send(batch, deadline=deadline, retry=True, on_settled=mark):
                    return False
            store.acquire_lease(SPOOL_LEASE, owner, ttl)
        return False
    finally:
        store.release_lease(SPOOL_LEASE, owner)
