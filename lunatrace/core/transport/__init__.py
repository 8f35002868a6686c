"""Sinks: where built events go. Only this package does I/O.

A sink's ``emit`` is called on the application's thread and must never block or raise;
delivery (batching, HTTP, the local store) happens elsewhere. :func:`make_sink` picks the
sink for a configuration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from lunatrace.core.config import Config
from lunatrace.core.events import EventError, RawEvent, to_wire
from lunatrace.core.serialize import FieldEncoder


class Sink(Protocol):
    """What the tracer hands raw events to."""

    def emit(self, event: RawEvent) -> None:
        """Accept one raw event without blocking; never raises."""

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver everything emitted before the call; ``True`` if done within ``timeout``."""

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush, then release resources; later events are dropped."""

    def every_tick(self, task: Callable[[], None]) -> None:
        """Run ``task`` on the sink's own thread, between batches, about every flush interval.

        Housekeeping that emits events (the tracer's sweep of abandoned runs) runs there,
        never inside a hook or a record's build. A sink without a thread never runs it.
        """


class MemorySink:
    """Keeps wire events in a list: for tests and for inspecting what would be sent."""

    def __init__(self, encoder: FieldEncoder | None = None) -> None:
        self.encoder = encoder or FieldEncoder(64_000)
        self.events: list[dict[str, Any]] = []
        self.rejected: list[tuple[RawEvent, str]] = []
        self._lock = threading.Lock()

    def emit(self, event: RawEvent) -> None:
        # Converted under the lock: records are built one at a time, in order, as the
        # background worker builds them.
        with self._lock:
            try:
                wire = to_wire(event, self.encoder)
            except EventError as exc:
                self.rejected.append((event, str(exc)))
                return
            if wire is not None:
                self.events.append(wire)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        return True

    def every_tick(self, task: Callable[[], None]) -> None:
        """No thread, no ticks: a test runs the housekeeping itself."""

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"queued": len(self.events) + len(self.rejected), "failed": len(self.rejected)}


def make_sink(config: Config, encoder: FieldEncoder) -> Sink:
    """The sink for ``config``: the Lunary server when a key is set, else the local store.

    Both are a background :class:`~lunatrace.core.transport.worker.BatchWorker`; only the
    destination of its batches differs. Imported here, not at the top, so that
    ``import lunatrace`` does not pay for ``requests`` and ``sqlite3``.
    """
    from lunatrace.core.transport.destinations import ServerDestination, StoreDestination
    from lunatrace.core.transport.worker import BatchWorker

    return BatchWorker(config, encoder, ServerDestination if config.uses_server else StoreDestination)
