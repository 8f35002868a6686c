"""Uploading the store's undelivered events (spooled, or recorded offline) to the server.

The upload is :func:`~lunatrace.core.transport.resend.resend`, as the worker re-sends its
spool: the same rules as live delivery, each delivered batch marked in the store at once,
and the store's lease keeping two uploads from sending the same events.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from lunatrace.core.config import Config, ConfigError
from lunatrace.core.transport.delivery import Counters
from lunatrace.core.transport.http import IngestClient
from lunatrace.core.transport.resend import resend
from lunatrace.core.transport.sender import Sender
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
    counters = Counters()
    client = IngestClient(config)
    sender = Sender(config, client, counters, threading.Event())
    try:
        done = resend(store, sender, lease_owner("push"), include_local=True)
    finally:
        client.close()
    if done is None:
        raise StoreError(f"another process is uploading events from {store.path}; try again shortly")
    if not done:
        report.problem = sender.disabled or f"the server at {config.shown('api_url')} is unavailable"
        report.configuration = sender.disabled is not None
    report.sent, report.failed, report.requests = counters.sent, counters.failed_refused, sender.requests
    report.damaged = store.damaged
    report.remaining = store.count_pending()
    return report
