"""The background worker: a bounded queue on the caller's side, batching on its own thread.

``emit`` is the hot path: a length check and a ``deque.append`` (atomic under the GIL),
no lock, no I/O, no serialization; a full queue drops and counts. One daemon thread,
started on the first event, turns raw events into wire JSON and hands batches (capped by
count and bytes, sent at least every ``flush_interval``) to its destination (see
:mod:`~lunatrace.core.transport.delivery`), one batch at a time and in order.

``flush`` puts a marker in the queue and waits for the worker to reach it, so it covers
exactly the events emitted before the call. While it waits, its deadline is what
:meth:`BatchWorker.waited_until` tells the destination, whose pacing to the server's rate
limit must not hold it past its bound. ``shutdown`` flushes within its bound, tells
the destination to stop retrying (it then keeps what is left, e.g. in the spool), and if
the worker is stuck (a hung request) takes over the batch in flight and the rest of the
queue itself, so the exit never waits longer than asked and nothing is lost.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator

from lunatrace.core.config import Config
from lunatrace.core.events import EventError, HookRecord, RawEvent
from lunatrace.core.guard import swallowed
from lunatrace.core.serialize import FieldEncoder
from lunatrace.core.transport.batch import Item, sized_batches
from lunatrace.core.transport.delivery import Counters, DestinationFactory

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
CHUNK = 64  # events the worker takes from the queue at once


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
    """A :class:`~lunatrace.core.transport.Sink` that batches events for a destination.

    It builds the destination itself (``destination(config, self)``): to it, the worker
    is a :class:`~lunatrace.core.transport.delivery.Feed`.
    """

    def __init__(self, config: Config, encoder: FieldEncoder, destination: DestinationFactory) -> None:
        self.config = config
        self.encoder = encoder
        self.counters = Counters()
        self.stopping = threading.Event()
        self._make_destination = destination
        self.destination = destination(config, self)
        self._batch_events = config.batch_max_events
        self._batch_bytes = config.batch_max_bytes
        self._event_bytes = float(FIRST_EVENT_BYTES)  # memory a queued event holds (estimated)
        self._bound_queue()
        self._tick_tasks: list[Callable[[], None]] = []
        self._init_state()
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
        self._unyielded = 0  # see ``_encoded``
        self._reached: _Marker | None = None  # the flush marker the last drain stopped at
        self._dropped_seen = 0  # ``dropped`` when the last flush was answered
        self._callers: dict[_Marker, float] = {}  # flushes being waited for, and until when
        self._callers_lock = threading.Lock()
        self._last_drop_warning = 0.0
        self._thread: threading.Thread | None = None

    def every_tick(self, task: Callable[[], None]) -> None:
        self._tick_tasks.append(task)

    def backlogged(self) -> bool:
        """The queue is at least half full: the destination should stop retrying early."""
        return 2 * len(self._queue) >= self._max_queue

    def waited_until(self) -> float:
        """The earliest deadline of a ``flush`` (or ``shutdown``) blocked now, else ``math.inf``."""
        if not self._callers:
            return math.inf
        with self._callers_lock:
            return min(self._callers.values(), default=math.inf)

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
            if type(event) is HookRecord:
                event.dropped()  # a run's end: the run must not wait for it
            return
        queue.append(event)
        if len(queue) >= self._wake_at and not self._wake.is_set():
            self._wake.set()  # setting an already set Event would cost a lock

    def _drop(self) -> None:
        counters = self.counters
        if self._closed:
            counters.dropped_shut_down += 1
        else:
            counters.dropped_queue_full += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= DROP_WARNING_INTERVAL_S:
            self._last_drop_warning = now
            reason = "lunatrace is shut down" if self._closed else f"the queue is full ({self._max_queue})"
            dropped = counters.dropped
            logger.warning("lunatrace: dropping events because %s; %d dropped so far", reason, dropped)

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
        with self._callers_lock:
            self._callers[marker] = math.inf if timeout is None else time.monotonic() + timeout
        self._queue.append(marker)
        self._wake.set()
        try:
            return marker.done.wait(timeout) and marker.clean
        finally:
            with self._callers_lock:
                self._callers.pop(marker, None)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush within ``timeout``, then keep whatever is left; later events are dropped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        flushed = self.flush(timeout)
        with self._start_lock:
            self._closed = True
        self.stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            remaining = TAKEOVER_GRACE_S if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining + TAKEOVER_GRACE_S)
        if thread is None or thread.is_alive():
            self._take_over(deadline)  # closes the destination
        else:
            self.destination.close([])
        return flushed

    def _take_over(self, deadline: float | None = None) -> None:
        """Keep the worker's batch in flight and the rest of the queue, within a bound, and
        close the destination.

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
            self.destination.close([])
            return
        kept = threading.Event()

        def keep() -> None:
            with swallowed("keeping events at exit", "they are counted as dropped_at_exit"):
                self.destination.close([item for item in items if self._encode(item)])
                kept.set()

        keeper = threading.Thread(target=keep, name="lunatrace-exit", daemon=True)
        keeper.start()
        budget = TAKEOVER_GRACE_S if deadline is None else max(TAKEOVER_GRACE_S, deadline - time.monotonic())
        if not kept.wait(budget):
            self.counters.dropped_at_exit += len(items)
            logger.error(
                "lunatrace: %d event(s) could not be kept at exit within the exit timeout (encoding them, "
                "or writing them to %s, did not finish); they are lost",
                len(items),
                self.config.store_path,
            )

    def stats(self) -> dict[str, int]:
        """Event counts: queued (ever accepted), sent, retried, spooled, stored, dropped and
        failed (the totals), then each reason for dropped and failed events (see
        :class:`~lunatrace.core.transport.delivery.Counters`)."""
        queued = self._taken + sum(1 for e in list(self._queue) if not isinstance(e, _Marker))
        return {"queued": queued, **self.counters.as_dict()}

    # --- worker thread ------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.config.flush_interval
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            closing = self._closed  # read first: nothing is queued once it is set
            with swallowed("delivery", "the worker goes on with the next batch"):
                if not self._drain():
                    return
                if closing:
                    # Its last batches may still be on their way: they are delivered, or
                    # kept, before the worker ends (else a takeover keeps them).
                    self.destination.finish()
                self.destination.tick()
            for task in self._tick_tasks:
                with swallowed("a periodic task of the worker"):
                    task()
            if closing and not self._queue:
                return

    def _drain(self) -> bool:
        """Batch and hand off everything queued, answering each flush marker once what was
        queued before it is delivered; ``False`` once taken over."""
        while True:
            self._reached = None
            # Past a backlog, batches grow to take it (see ``batch.batch_events``).
            batches = sized_batches(self._encoded(), self._batch_events, self._batch_bytes, self._waiting)
            for batch, json_bytes in batches:
                self._learn_event_size(len(batch), json_bytes)  # before a send that may take long
                self._send(batch)
            if self._abandoned:
                return False
            marker = self._reached
            if marker is None:
                return True
            self.destination.finish()
            dropped = self.counters.dropped
            marker.clean = dropped == self._dropped_seen
            self._dropped_seen = dropped
            marker.done.set()

    def _encoded(self) -> Iterator[Item]:
        """The queued events, encoded, up to the next flush marker (left in ``_reached``) or
        the end of the queue; they are in flight from the moment they leave the queue until
        settled. They are taken in chunks of at most :data:`CHUNK` (one lock a chunk, not an
        event); ``_unyielded`` counts those of the chunk not handed on yet."""
        queue, handoff, inflight = self._queue, self._handoff, self._inflight
        popleft = queue.popleft
        while True:
            items: list[Item] = []
            with handoff:
                if self._abandoned:
                    return
                while len(items) < CHUNK:
                    try:
                        raw = popleft()
                    except IndexError:
                        break
                    if isinstance(raw, _Marker):
                        self._reached = raw
                        break
                    item = Item(raw)
                    inflight[id(item)] = item
                    items.append(item)
                self._taken += len(items)
            last = len(items) < CHUNK  # the queue's end or a marker came first
            left = len(items)
            for item in items:
                if self._abandoned:
                    return  # taken over: the rest of the chunk is the takeover's to keep
                left -= 1
                self._unyielded = left
                if self._encode(item):
                    yield item
                else:
                    with handoff:
                        inflight.pop(id(item), None)
            if last:
                return

    def _waiting(self) -> int:
        """Events still to be batched: those queued, and those of the chunk being encoded."""
        return len(self._queue) + self._unyielded

    def _encode(self, item: Item) -> bool:
        """Encode ``item``; ``False`` when there is nothing to send: an invalid event (logged
        and counted as failed) or a record that makes no event."""
        try:
            item.encode(self.encoder)
        except (EventError, ValueError, TypeError, KeyError) as exc:
            self.counters.failed_invalid += 1
            logger.warning("lunatrace: invalid event not sent (%s)", exc)
            return False
        if item.body is None:
            self._taken -= 1  # no event to count (e.g. a streamed run's first token)
            return False
        return True

    def _send(self, batch: list[Item]) -> None:
        if not self._abandoned:  # taken over: the batch is the takeover's to keep
            self.destination.deliver(batch, self._settle)

    def _settle(self, items: list[Item]) -> bool:
        with self._handoff:
            if self._abandoned:
                return False
            for item in items:
                self._inflight.pop(id(item), None)
            return True

    def _after_fork_in_child(self) -> None:
        """The child starts empty, with a destination of its own: the parent still owns
        (and delivers) what it queued, over its own connections."""
        self._init_state()
        self.counters.reset()
        self.stopping.clear()
        self.destination = self._make_destination(self.config, self)


def _after_fork() -> None:
    for worker in list(_WORKERS):
        worker._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
