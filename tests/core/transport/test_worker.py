"""The batch processor (``BatchWorker``) against a destination that records what it is
given: batches cut by count and bytes, flush, shutdown, drop reasons, periodic tasks.

The worker is real and runs its own thread; only its destination is a stand-in, as a
batch span processor is tested against an in-memory exporter.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lunatrace.core.config import Config
from lunatrace.core.events import StampedEvent, build, wire_json
from lunatrace.core.serialize import FieldEncoder
from lunatrace.core.transport.batch import Item
from lunatrace.core.transport.delivery import Feed, Settle
from lunatrace.core.transport.worker import BatchWorker

ENCODER = FieldEncoder(64_000)
QUIET = 60.0  # a flush interval the tests never reach: the worker drains when told to


class Recorder:
    """A destination that keeps the names of the events in each batch it is given.

    ``gate`` cleared makes :meth:`deliver` hang (a request that never returns), and
    ``close_gate`` cleared makes :meth:`close` hang (a store another program keeps locked).
    """

    def __init__(self, config: Config, feed: Feed) -> None:
        self.feed = feed
        self.batches: list[list[str]] = []
        self.delivered_at_finish: list[int] = []
        self.ticks = 0
        self.closed: list[list[str]] = []
        self.delivering = threading.Event()  # set once deliver() was called
        self.gate = threading.Event()
        self.gate.set()
        self.close_gate = threading.Event()
        self.close_gate.set()

    def deliver(self, items: list[Item], settle: Settle) -> None:
        self.delivering.set()
        self.gate.wait(30)
        self.batches.append(names(items))
        settle(items)

    def tick(self) -> None:
        self.ticks += 1

    def finish(self) -> None:
        self.delivered_at_finish.append(sum(len(batch) for batch in self.batches))

    def close(self, left: list[Item]) -> None:
        self.close_gate.wait(30)
        self.closed.append(names(left))


def names(items: list[Item]) -> list[str]:
    return [json.loads(item.body or "{}")["name"] for item in items]


def event(name: str, run_type: str = "tool") -> StampedEvent:
    return StampedEvent(1_700_000_000_000, build("start", run_type, str(uuid.uuid4()), name=name))


def event_bytes(name: str) -> int:
    """What one event adds to a request body: its JSON and a separator."""
    return len((wire_json(event(name), ENCODER) or "").encode()) + 1


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """``start(**settings)``: a worker with a :class:`Recorder`, shut down after the test."""
    workers: list[BatchWorker] = []

    def make(**settings: Any) -> tuple[BatchWorker, Recorder]:
        settings = {"flush_interval": QUIET, "store_path": tmp_path / "events.db", **settings}
        config = Config.resolve(env={}, **settings)
        worker = BatchWorker(config, ENCODER, Recorder)
        workers.append(worker)
        assert isinstance(worker.destination, Recorder)
        return worker, worker.destination

    yield make
    for worker in workers:
        recorder = worker.destination
        assert isinstance(recorder, Recorder)
        recorder.gate.set()
        recorder.close_gate.set()
        if not worker.stopping.is_set():  # not shut down by the test
            worker.shutdown(5)


def emit(worker: BatchWorker, *labels: str) -> None:
    for label in labels:
        worker.emit(event(label))


def test_batches_are_cut_by_count_in_the_order_emitted(start: Any) -> None:
    worker, recorder = start(batch_max_events=3)
    emit(worker, *"abcdefg")
    assert worker.flush(5)
    assert recorder.batches == [["a", "b", "c"], ["d", "e", "f"], ["g"]]


def test_batches_are_cut_by_bytes_and_a_larger_event_goes_alone(start: Any) -> None:
    size = event_bytes("a")
    worker, recorder = start(batch_max_events=100, batch_max_bytes=2 * size + 1)
    large = "x" * 2 * size  # alone, it is over the cap
    emit(worker, "a", "b", "c", large, "d", "e")
    assert worker.flush(5)
    assert recorder.batches == [["a", "b"], ["c"], [large], ["d", "e"]]


def test_a_backlog_goes_in_batches_grown_to_take_it_and_a_short_queue_in_small_ones(start: Any) -> None:
    # The worker sleeps on its timer until flush(): the whole queue is there when it drains.
    worker, recorder = start(batch_max_events=50)
    emit(worker, *(f"a{i}" for i in range(150)))  # three batches' worth: not a backlog
    assert worker.flush(5)
    emit(worker, *(f"b{i}" for i in range(250)))  # five batches' worth: a backlog
    assert worker.flush(5)
    assert [len(batch) for batch in recorder.batches] == [50, 50, 50, 250]
    assert [name for batch in recorder.batches for name in batch][150:] == [f"b{i}" for i in range(250)]


def test_a_grown_batch_is_still_cut_at_the_byte_cap(start: Any) -> None:
    worker, recorder = start(batch_max_events=10, batch_max_bytes=30 * event_bytes("a") + 1)
    emit(worker, *("a" for _ in range(70)))  # a backlog: 70 >= 4 x 10
    assert worker.flush(5)
    assert [len(batch) for batch in recorder.batches] == [30, 30, 10]


def test_flush_covers_exactly_what_was_emitted_before_it(start: Any) -> None:
    worker, recorder = start()
    recorder.gate.clear()
    emit(worker, "first")
    worker.flush(0)
    assert recorder.delivering.wait(5)  # the worker is held up: what follows queues behind
    emit(worker, "a", "b", "c")
    worker.flush(0)  # a marker behind a, b, c, not waited for
    emit(worker, "d", "e")  # behind the marker
    recorder.gate.set()
    assert worker.flush(5)
    assert recorder.delivered_at_finish == [1, 4, 6]  # each marker answered after its events, before the next
    assert recorder.batches == [["first"], ["a", "b", "c"], ["d", "e"]]


def test_flush_waits_for_delivery(start: Any) -> None:
    worker, recorder = start()
    recorder.gate.clear()  # the destination does not return
    emit(worker, "a")
    assert not worker.flush(0.3)
    recorder.gate.set()
    assert worker.flush(5)
    assert recorder.batches == [["a"]]


def test_shutdown_delivers_what_it_can_and_closes_the_destination_once(start: Any) -> None:
    worker, recorder = start()
    emit(worker, "a", "b")
    assert worker.shutdown(5)
    assert recorder.batches == [["a", "b"]]
    assert recorder.closed == [[]]


def test_shutdown_keeps_the_batch_in_flight_and_the_rest_of_the_queue(start: Any) -> None:
    worker, recorder = start(batch_max_events=2)
    recorder.gate.clear()  # the first batch's request hangs
    emit(worker, "a", "b", "c")
    worker.flush(0)
    assert recorder.delivering.wait(5)  # a and b in flight, c taken from the queue
    emit(worker, "d")
    assert not worker.shutdown(0.2)
    assert recorder.closed == [["a", "b", "c", "d"]]
    stats = worker.stats()
    assert (stats["dropped"], stats["dropped_at_exit"]) == (0, 0)


def test_what_cannot_be_kept_within_the_bound_is_counted_as_dropped_at_exit(start: Any) -> None:
    worker, recorder = start()
    recorder.gate.clear()
    recorder.close_gate.clear()  # keeping hangs too
    emit(worker, "a", "b")
    started = time.monotonic()
    assert not worker.shutdown(0.2)
    assert time.monotonic() - started < 3
    stats = worker.stats()
    assert (stats["dropped_at_exit"], stats["dropped"]) == (2, 2)


def test_lost_events_are_counted_under_their_reason(start: Any) -> None:
    worker, recorder = start(queue_size=100)
    worker.emit(event("not a run type", run_type="nonsense"))
    emit(worker, *(f"e{i}" for i in range(130)))  # the worker does not drain meanwhile
    assert not worker.flush(5)  # events were lost since the previous flush
    assert worker.flush(5)
    assert worker.shutdown(5)
    emit(worker, "late", "later")
    stats = worker.stats()
    assert stats["dropped_queue_full"] == 31
    assert stats["dropped_shut_down"] == 2
    assert stats["failed_invalid"] == 1
    assert (stats["dropped"], stats["failed"]) == (33, 1)
    assert stats["queued"] == 100
    assert sum(len(batch) for batch in recorder.batches) == 99


def test_stats_is_flat_with_every_reason(start: Any) -> None:
    worker, _ = start()
    stats = worker.stats()
    assert list(stats) == [
        "queued",
        "sent",
        "retried",
        "spooled",
        "stored",
        "dropped",
        "failed",
        "dropped_queue_full",
        "dropped_shut_down",
        "dropped_store_unusable",
        "dropped_at_exit",
        "failed_invalid",
        "failed_refused",
        "paced",
        "rate_limited",
    ]
    assert all(type(value) is int for value in stats.values())


def test_the_destination_sees_the_queue_back_up(start: Any) -> None:
    worker, recorder = start(queue_size=100)
    emit(worker, *(f"e{i}" for i in range(49)))
    assert not recorder.feed.backlogged()
    emit(worker, "e49")
    assert recorder.feed.backlogged()
    assert not recorder.feed.stopping.is_set()
    worker.shutdown(5)
    assert recorder.feed.stopping.is_set()


def test_every_tick_tasks_run_on_the_worker_after_the_destination_s_tick(start: Any) -> None:
    worker, recorder = start(flush_interval=0.02)
    seen: list[tuple[str, int]] = []
    ran = threading.Event()

    def broken() -> None:
        raise RuntimeError("a task that fails")

    def task() -> None:
        seen.append((threading.current_thread().name, recorder.ticks))
        if len(seen) >= 3:
            ran.set()

    worker.every_tick(broken)
    worker.every_tick(task)
    emit(worker, "a")  # starts the worker
    assert ran.wait(5)
    assert {name for name, _ in seen} == {"lunatrace-worker"}
    assert all(ticks >= 1 for _, ticks in seen)
    assert [ticks for _, ticks in seen] == sorted({ticks for _, ticks in seen})  # one run per tick
    emit(worker, "b")  # a failing task stops neither the others nor delivery
    assert worker.flush(5)
    assert recorder.batches[-1] == ["b"]
