"""The seam between the batch worker and where its batches go.

:class:`~lunatrace.core.transport.worker.BatchWorker` is the processor: the queue, the
batching policy, ``flush``, ``shutdown``, fork safety. A :class:`Destination` is what it
hands each batch to (the Lunary server with the store as spool, or the store alone), as
OpenTelemetry's batch span processor hands spans to an exporter. The worker builds its
destination itself, from a :data:`DestinationFactory`, and gives it a :class:`Feed`: what
the destination may read of the worker (when to stop retrying) and the :class:`Counters`
both write. Nothing else passes between them but batches and :class:`Settle`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol

from lunatrace.core.config import Config
from lunatrace.core.transport.batch import Item


@dataclass
class Counters:
    """What happened to events, for ``lunatrace.stats()``. Each lost event is counted once,
    under the reason it was lost for; ``dropped`` and ``failed`` are the totals.

    Written by one thread at a time (the lanes keep counters of their own, which the worker
    adds with :meth:`add`), except the queue's drops, counted on the application's threads.
    """

    sent: int = 0  # accepted by the server
    retried: int = 0  # events re-sent after a failed attempt
    spooled: int = 0  # written to the store to be re-sent later
    stored: int = 0  # written to the store as the embedded default (no server)
    dropped_queue_full: int = 0  # emit() found the queue full
    dropped_shut_down: int = 0  # emitted after shutdown()
    dropped_store_unusable: int = 0  # to be kept, but the store could not be written
    dropped_at_exit: int = 0  # not kept within the exit bound (their encoding or write hung)
    failed_invalid: int = 0  # not an event: a record that cannot be converted, a damaged store row
    failed_refused: int = 0  # refused by the server for good
    # Requests, not events: how delivery kept to the server's rate limit (see ``pacing``).
    paced: int = 0  # requests held back to stay within the limit
    rate_limited: int = 0  # requests answered 429 anyway (a shared budget, a caller who could not wait)

    @property
    def dropped(self) -> int:
        """Events lost, whatever the reason."""
        lost = self.dropped_queue_full + self.dropped_shut_down
        return lost + self.dropped_store_unusable + self.dropped_at_exit

    @property
    def failed(self) -> int:
        """Events refused, whatever the reason."""
        return self.failed_invalid + self.failed_refused

    def as_dict(self) -> dict[str, int]:
        """Every count, flat: the totals where ``stats()`` always had them, then the reasons."""
        counts = {field.name: getattr(self, field.name) for field in fields(self)}
        totals = {"dropped": self.dropped, "failed": self.failed}
        head = {name: counts.pop(name) for name in ("sent", "retried", "spooled", "stored")}
        return {**head, **totals, **counts}

    def add(self, other: Counters) -> None:
        """Add ``other``'s counts to these."""
        for field in fields(self):
            name = field.name
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def reset(self) -> None:
        for field in fields(self):
            setattr(self, field.name, 0)


class Settle(Protocol):
    """Called by a destination with a part of a batch before it acts on it for good
    (counts it as sent, marks it delivered); ``False``: the worker was taken over at
    shutdown, the part is already kept elsewhere and must be left alone."""

    def __call__(self, items: list[Item]) -> bool: ...


class Feed(Protocol):
    """The worker, as the destination it feeds sees it."""

    counters: Counters
    stopping: threading.Event  # set by shutdown(): stop retrying, keep what is left

    def backlogged(self) -> bool:
        """Whether events pile up behind the batch being sent (the queue is half full):
        they are better kept in the spool than dropped from a full queue."""

    def waited_until(self) -> float:
        """The earliest deadline of a caller waiting for delivery (``flush``, ``shutdown``);
        ``math.inf`` when none waits, or none with a bound: a pacing wait must not make it
        miss its bound."""


class Destination(Protocol):
    """Where the worker's batches go. Called on the worker's thread, except :meth:`close`."""

    def deliver(self, items: list[Item], settle: Settle) -> None:
        """Deliver or keep ``items``, after everything given before. May return while they
        are still being sent (the worker encodes the next batch meanwhile)."""

    def tick(self) -> None:
        """Housekeeping between batches, at least every flush interval (e.g. re-send the
        spool); the worker's ``every_tick`` tasks run right after it."""

    def finish(self) -> None:
        """Wait for delivery still in progress (before a flush is answered)."""

    def close(self, left: list[Item]) -> None:
        """Keep ``left`` (encoded events the worker could not deliver) for later, then
        release resources. Called once, at shutdown, by the thread shutting down or a
        helper of it: the worker has stopped or is stuck in :meth:`deliver`."""


DestinationFactory = Callable[[Config, Feed], Destination]
