"""The background worker: a bounded queue on the caller's side, batching on its own thread.

``emit`` is the hot path: a length check and a ``deque.append`` (atomic under the GIL),
no lock, no I/O, no serialization; a full queue drops and counts. One daemon thread,
started on the first event, turns raw events into wire JSON and hands batches (capped by
count and bytes, sent at least every ``flush_interval``) to a :class:`Destination`, one
batch at a time and in order.

``flush`` puts a marker in the queue and waits for the worker to reach it, so it covers
exactly the events emitted before the call. ``shutdown`` flushes within its bound, tells
the destination to stop retrying (it then keeps what is left, e.g. in the spool), and if
the worker is stuck (a hung request) takes over the batch in flight and the rest of the
queue itself, so the exit never waits longer than asked and nothing is lost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Protocol

from lunatrace.core.config import Config
from lunatrace.core.events import EventError, RawEvent
from lunatrace.core.serialize import FieldEncoder
from lunatrace.core.transport.batch import Item
from lunatrace.core.transport.sender import Counters

logger = logging.getLogger("lunatrace")

DROP_WARNING_INTERVAL_S = 60.0
TAKEOVER_GRACE_S = 0.5
# The queue's bound by memory: a queued event keeps the application's objects alive,
# which take about this many times the size of the JSON made from them (measured:
# 10,000 small llm events held 7.0 MB for 3.5 MB of JSON), never less than a small event.
RAW_PER_JSON_BYTE = 2.0
FIRST_EVENT_BYTES = 1_000
MIN_EVENT_BYTES = 500
MIN_QUEUE = 100
WAKE_AT_MOST = 5_000


class Destination(Protocol):
    """Where the worker's batches go (a Lunary server, or the local store)."""

    counters: Counters
    stop: threading.Event
    backlogged: Callable[[], bool]  # set by the worker: its queue is at least half full

    def start(self) -> None:
        """Called on the worker thread before the first batch (e.g. resend the spool)."""

    def deliver(self, items: list[Item], settle: Settle) -> None:
        """Deliver or keep ``items``; call ``settle(part)`` before acting on a part for good.

        ``settle`` returns ``False`` when the worker was taken over at shutdown: the part
        is already kept elsewhere and must be left alone.
        """

    def tick(self) -> None:
        """Called on the worker thread at least every flush interval."""

    def finish(self) -> None:
        """Wait for delivery still in progress (before a flush is answered)."""

    def keep(self, items: list[Item]) -> None:
        """Keep undelivered items for later (called by the thread shutting down)."""

    def after_fork(self) -> None:
        """Drop resources a forked child must not share with its parent."""

    def close(self) -> None:
        """Release resources; the worker has stopped."""


class Settle(Protocol):
    def __call__(self, items: list[Item]) -> bool: ...


class _Marker:
    """A flush request travelling through the queue.

    ``clean`` is set when it is reached: whether no event was lost (dropped) since the
    previous flush was answered, so that ``flush()`` is ``True`` only when everything
    emitted before it was delivered or kept.
    """

    __slots__ = ("clean", "done")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.clean = False


_WORKERS: weakref.WeakSet[BatchWorker] = weakref.WeakSet()


class BatchWorker:
    """A :class:`~lunatrace.core.transport.Sink` that batches events for a destination."""

    def __init__(self, config: Config, encoder: FieldEncoder, destination: Destination) -> None:
        self.config = config
        self.encoder = encoder
        self.destination = destination
        self.counters = destination.counters
        self._batch_events = config.batch_max_events
        self._batch_bytes = config.batch_max_bytes
        self._event_bytes = float(FIRST_EVENT_BYTES)  # memory a queued event holds (estimated)
        self._bound_queue()
        self._tick_tasks: list[Callable[[], None]] = []
        self._init_state()
        destination.backlogged = lambda: 2 * len(self._queue) >= self._max_queue
        _WORKERS.add(self)

    def _bound_queue(self) -> None:
        """The most events the queue takes: ``queue_size``, or fewer when that many would
        hold more than ``queue_max_bytes`` (at the memory the worker sees events take).

        The worker wakes on its timer, or early once the queue is a quarter full: waking
        it for every full batch would make it contend with the application for the
        interpreter lock in many small slices instead of a few large ones.
        """
        by_memory = int(self.config.queue_max_bytes / self._event_bytes)
        size = self.config.queue_size
        self._max_queue = max(min(MIN_QUEUE, size), min(size, by_memory))
        self._wake_at = max(self._batch_events, min(self._max_queue // 4, WAKE_AT_MOST))

    def _learn_event_size(self, events: int, json_bytes: int) -> None:
        """Follow the memory queued events take: their JSON's size (measured when encoded)
        times what the objects behind it cost in memory, as a moving average."""
        if events:
            measured = RAW_PER_JSON_BYTE * json_bytes / events
            self._event_bytes = 0.8 * self._event_bytes + 0.2 * max(measured, MIN_EVENT_BYTES)
            self._bound_queue()

    def _init_state(self) -> None:
        self._queue: deque[RawEvent | _Marker] = deque()
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._handoff = threading.Lock()  # guards _inflight/_abandoned against a takeover
        self._inflight: dict[int, Item] = {}
        self._abandoned = False
        self._closed = False
        self._taken = 0
        self._dropped_seen = 0  # ``dropped`` when the last flush was answered
        self._last_drop_warning = 0.0
        self._thread: threading.Thread | None = None

    def every_tick(self, task: Callable[[], None]) -> None:
        self._tick_tasks.append(task)

    def __repr__(self) -> str:
        return f"BatchWorker(destination={self.destination!r})"

    # --- caller's side ------------------------------------------------------------------

    def emit(self, event: RawEvent) -> None:
        """Queue one raw event; never blocks, never raises."""
        if self._thread is None:
            self._ensure_started()
        queue = self._queue
        if self._closed or len(queue) >= self._max_queue:
            self._drop()
            return
        queue.append(event)
        if len(queue) >= self._wake_at and not self._wake.is_set():
            self._wake.set()  # setting an already set Event would cost a lock

    def _drop(self) -> None:
        self.counters.dropped += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= DROP_WARNING_INTERVAL_S:
            self._last_drop_warning = now
            reason = "lunatrace is shut down" if self._closed else f"the queue is full ({self._max_queue})"
            logger.warning(
                "lunatrace: dropping events because %s; %d dropped so far", reason, self.counters.dropped
            )

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(target=self._run, name="lunatrace-worker", daemon=True)
            self._thread = thread
            thread.start()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything emitted before the call is delivered or kept; ``False``
        on timeout, or if events were lost (dropped) since the previous flush."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return not self._queue
        marker = _Marker()
        self._queue.append(marker)
        self._wake.set()
        return marker.done.wait(timeout) and marker.clean

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush within ``timeout``, then keep whatever is left; later events are dropped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed = self.flush(timeout)
        with self._start_lock:
            self._closed = True
        self.destination.stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            remaining = TAKEOVER_GRACE_S if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining + TAKEOVER_GRACE_S)
            if thread.is_alive():
                self._take_over(deadline)
        else:
            self._take_over(deadline)
        self.destination.close()
        return flushed

    def _take_over(self, deadline: float | None = None) -> None:
        """Keep the worker's batch in flight and the rest of the queue, within a bound.

        Encoding runs the application's code (a ``__repr__``, the mask hook) and keeping
        may wait on a locked store: both happen on a thread of their own, so the exiting
        thread never runs user code, and waits until ``deadline`` (at least
        :data:`TAKEOVER_GRACE_S`). What is not kept by then is counted as dropped and
        reported.
        """
        with self._handoff:
            self._abandoned = True
            items = list(self._inflight.values())
            self._inflight.clear()
            while self._queue:
                raw = self._queue.popleft()
                if isinstance(raw, _Marker):
                    raw.done.set()
                else:
                    self._taken += 1
                    items.append(Item(raw))
        if not items:
            return
        kept = threading.Event()

        def keep() -> None:
            try:
                encoded = [item for item in items if self._encode(item)]
                if encoded:
                    self.destination.keep(encoded)
            except Exception as exc:  # noqa: BLE001 - reported below as events not kept
                logger.warning("lunatrace: could not keep events at exit (%s: %s)", type(exc).__name__, exc)
                return
            kept.set()

        keeper = threading.Thread(target=keep, name="lunatrace-exit", daemon=True)
        keeper.start()
        budget = TAKEOVER_GRACE_S if deadline is None else max(TAKEOVER_GRACE_S, deadline - time.monotonic())
        if not kept.wait(budget):
            self.counters.dropped += len(items)
            logger.error(
                "lunatrace: %d event(s) could not be kept at exit within the exit timeout (encoding them, "
                "or writing them to %s, did not finish); they are lost",
                len(items),
                self.config.store_path,
            )

    def stats(self) -> dict[str, int]:
        """Event counts: queued (ever accepted), sent, retried, spooled, stored, dropped, failed."""
        queued = self._taken + sum(1 for e in list(self._queue) if not isinstance(e, _Marker))
        return {"queued": queued, **asdict(self.counters)}

    # --- worker thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.destination.start()
        except Exception as exc:  # noqa: BLE001
            logger.warning("lunatrace: could not resend kept events (%s)", exc)
        interval = self.config.flush_interval
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            try:
                if not self._drain():
                    return
                self.destination.tick()
                for task in self._tick_tasks:
                    task()
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything
                logger.warning("lunatrace: delivery error (%s: %s)", type(exc).__name__, exc)
            if self._closed and not self._queue:
                return

    def _drain(self) -> bool:
        """Batch and hand off everything queued; ``False`` once taken over."""
        batch: list[Item] = []
        size = 0
        events = json_bytes = 0
        while True:
            with self._handoff:
                if self._abandoned:
                    return False
                try:
                    raw = self._queue.popleft()
                except IndexError:
                    break
                if isinstance(raw, _Marker):
                    item = None
                else:
                    self._taken += 1
                    item = Item(raw)
                    self._inflight[id(item)] = item
            if item is None:
                self._send(batch)
                batch, size = [], 0
                self.destination.finish()
                dropped = self.counters.dropped
                raw.clean = dropped == self._dropped_seen  # type: ignore[union-attr]
                self._dropped_seen = dropped
                raw.done.set()  # type: ignore[union-attr]
                continue
            if not self._encode(item):
                with self._handoff:
                    self._inflight.pop(id(item), None)
                continue
            item_size = item.size
            events += 1
            json_bytes += item_size
            if batch and (len(batch) >= self._batch_events or size + item_size > self._batch_bytes):
                self._learn_event_size(events, json_bytes)  # before a send that may take long
                events = json_bytes = 0
                self._send(batch)
                batch, size = [], 0
            batch.append(item)
            size += item_size
        self._learn_event_size(events, json_bytes)
        self._send(batch)
        return True

    def _encode(self, item: Item) -> bool:
        """Encode ``item``; ``False`` when there is nothing to send: an invalid event (logged
        and counted as failed) or a record that makes no event."""
        try:
            item.encode(self.encoder)
        except (EventError, ValueError, TypeError, KeyError) as exc:
            self.counters.failed += 1
            logger.warning("lunatrace: invalid event not sent (%s)", exc)
            return False
        if item.body is None:
            self._taken -= 1  # no event to count (e.g. a streamed run's first token)
            return False
        return True

    def _send(self, batch: list[Item]) -> None:
        if batch:
            self.destination.deliver(batch, self._settle)

    def _settle(self, items: list[Item]) -> bool:
        with self._handoff:
            if self._abandoned:
                return False
            for item in items:
                self._inflight.pop(id(item), None)
            return True

    def _after_fork_in_child(self) -> None:
        """The child starts empty: the parent still owns (and delivers) what it queued."""
        self._init_state()
        self.counters.reset()
        self.destination.stop.clear()
        self.destination.after_fork()


def _after_fork() -> None:
    for worker in list(_WORKERS):
        worker._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
