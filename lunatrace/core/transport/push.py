"""Uploading the store's undelivered events (spooled, or recorded offline) to the server.

The same rules as live delivery apply (order, one request at a time, retries, 413 splits,
a duplicate start on a re-sent event counts as delivered); each delivered batch is marked
in the store at once, so an interrupted upload resumes where it stopped and nothing is
sent twice. A lease in the store keeps two uploads (or a process re-sending its spool)
from sending the same events.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from lunatrace.core.config import Config, ConfigError
from lunatrace.core.transport.batch import Item, split_batches
from lunatrace.core.transport.destinations import SPOOL_LEASE, row_marker
from lunatrace.core.transport.http import IngestClient
from lunatrace.core.transport.sender import Counters, Sender
from lunatrace.core.transport.store import EventStore, StoreError, lease_owner


@dataclass
class PushReport:
    pending: int  # undelivered events before the upload
    requests: int  # requests planned (dry run: at least), or made (retries and 413 halves included)
    sent: int = 0
    failed: int = 0  # refused by the server for good
    remaining: int = 0  # still undelivered afterwards
    problem: str | None = None  # why the upload stopped early
    configuration: bool = False  # the problem is the key or URL: trying again cannot help
    damaged: int = 0  # rows that were not events (a damaged file), set aside unsent


def push(config: Config, store: EventStore, *, dry_run: bool = False) -> PushReport:
    """Upload every undelivered event in ``store`` to ``config``'s server, oldest first."""
    if not config.uses_server:
        raise ConfigError(
            "no project key configured: set LUNARY_PUBLIC_KEY or LUNARY_PRIVATE_KEY to upload stored events"
        )
    if dry_run:
        pending = store.count_pending()
        batches = -(-pending // config.batch_max_events)  # at least; the byte cap may add some
        return PushReport(pending, batches, remaining=pending)
    report = PushReport(store.count_pending(), 0)
    owner = lease_owner("push")
    lease_ttl = 2 * config.retry_timeout + 60
    if not store.acquire_lease(SPOOL_LEASE, owner, lease_ttl):
        raise StoreError(f"another process is uploading events from {store.path}; try again shortly")
    counters = Counters()
    client = IngestClient(config)
    sender = Sender(config, client, counters, threading.Event())
    try:
        while report.problem is None:
            rows = store.pending(config.batch_max_events)
            if not rows:
                break
            items = [Item.stored(row, wire) for row, wire in rows]
            for batch in split_batches(items, config.batch_max_events, config.batch_max_bytes):
                rest = sender.send(
                    batch,
                    deadline=time.monotonic() + config.retry_timeout,
                    retry=True,
                    on_settled=row_marker(store),
                )
                if rest:
                    unavailable = f"the server at {config.shown('api_url')} is unavailable"
                    report.problem = sender.disabled or unavailable
                    report.configuration = sender.disabled is not None
                    break
            store.acquire_lease(SPOOL_LEASE, owner, lease_ttl)
    finally:
        store.release_lease(SPOOL_LEASE, owner)
        client.close()
    report.sent, report.failed, report.requests = counters.sent, counters.failed, sender.requests
    report.damaged = store.damaged
    report.remaining = store.count_pending()
    return report
