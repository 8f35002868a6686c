"""Delivery to a real (fake) Lunary server on 127.0.0.1, in every fault scenario:
each event is delivered exactly once or kept in the spool, in order, one request at a time."""

from __future__ import annotations

import logging
import os
import threading
import time
import tracemalloc
from pathlib import Path
from typing import ClassVar

import pytest

import lunatrace
from tests.core.transport.helpers import (
    assert_delivered_in_order,
    assert_none_lost,
    emit_traces,
    keys_of,
    send_to,
    spooled,
)
from tests.support.fake_lunary import DUPLICATE_START, FakeLunary
from tests.support.trees import assert_valid_tree


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "events.db"


def test_events_arrive_in_order_across_many_batches(traced_to_server: FakeLunary, tmp_path: Path) -> None:
    # A byte cap of a few events: the backlog of 360 would otherwise go in one grown batch.
    send_to(traced_to_server, tmp_path / "s.db", batch_max_events=7, batch_max_bytes=1_000)
    expected = emit_traces(60)
    assert lunatrace.flush(10)
    assert_delivered_in_order(traced_to_server, expected)
    assert len(traced_to_server.requests) >= len(expected) // 7
    assert all(r.headers["User-Agent"].startswith("lunatrace-py/") for r in traced_to_server.requests)
    assert lunatrace.stats()["sent"] == len(expected)


def test_concurrent_threads_keep_parents_before_children(lunary_server: FakeLunary, spool: Path) -> None:
    send_to(lunary_server, spool, batch_max_events=5)
    results: list[list[tuple[str, str]]] = []
    threads = [threading.Thread(target=lambda: results.append(emit_traces(30))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert lunatrace.flush(10)
    assert_delivered_in_order(lunary_server, [key for keys in results for key in keys])


@pytest.mark.parametrize(
    "inject",
    [
        pytest.param(lambda s: s.fail_next(3, 503), id="5xx"),
        pytest.param(lambda s: s.fail_next(2, 500, b"not json at all"), id="500-text"),
        pytest.param(lambda s: s.fail_next(1, 408), id="408"),
        pytest.param(lambda s: s.malformed_next(2), id="malformed-200"),
        pytest.param(lambda s: s.reset_next(2), id="connection-reset"),
        pytest.param(lambda s: s.slow_next(2, 0.4), id="slow"),
    ],
)
def test_transient_failures_are_retried_until_delivered(
    lunary_server: FakeLunary, spool: Path, inject
) -> None:
    send_to(lunary_server, spool, batch_max_events=10)
    inject(lunary_server)
    expected = emit_traces(20)
    assert lunatrace.flush(15)
    assert_delivered_in_order(lunary_server, expected)
    assert_none_lost(lunary_server, spool, expected)
    stats = lunatrace.stats()
    assert stats["sent"] == len(expected) and stats["failed"] == 0 and stats["spooled"] == 0


def test_429_waits_for_retry_after(lunary_server: FakeLunary, spool: Path) -> None:
    send_to(lunary_server, spool)
    lunary_server.rate_limit_next(1, retry_after=1)
    expected = emit_traces(3)
    assert lunatrace.flush(10)
    first, second = lunary_server.requests[:2]
    assert first.status == 429 and second.status == 200
    assert second.received_at - first.received_at >= 1.0
    assert_delivered_in_order(lunary_server, expected)
    assert lunatrace.stats()["retried"] == len(expected)


def test_a_retried_start_the_server_already_stored_counts_as_delivered(
    lunary_server: FakeLunary, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    send_to(lunary_server, spool)
    lunary_server.reset_next(1, after_processing=True)  # stored, but the answer is lost
    expected = emit_traces(5)
    with caplog.at_level(logging.WARNING, logger="lunatrace"):
        assert lunatrace.flush(10)
    assert {error for _, error in lunary_server.rejected} == {DUPLICATE_START}
    assert lunatrace.stats()["failed"] == 0
    assert "refused" not in caplog.text
    assert_none_lost(lunary_server, spool, expected, resent=True)
    assert_valid_tree(list({(e["runId"], e["event"]): e for e in lunary_server.events}.values()))


def test_a_timed_out_request_is_retried_without_double_counting(
    lunary_server: FakeLunary, spool: Path
) -> None:
    send_to(lunary_server, spool, http_timeout=0.5)
    lunary_server.slow_next(1, 1.0)  # processed after the client gave up
    expected = emit_traces(4)
    assert lunatrace.flush(10)
    assert lunatrace.stats()["failed"] == 0
    assert_none_lost(lunary_server, spool, expected, resent=True)


def test_per_event_failures_are_logged_and_counted(
    lunary_server: FakeLunary, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    send_to(lunary_server, spool)
    tracer = lunatrace.get_tracer()
    bad = tracer.start_run("chain", "bad")
    tracer.end_run(bad)
    lunary_server.fail_event_ids.add(bad)
    with caplog.at_level(logging.WARNING, logger="lunatrace"):
        assert lunatrace.flush(10)
    stats = lunatrace.stats()
    assert (stats["failed"], stats["failed_refused"]) == (2, 2)
    assert f"run {bad}: injected failure" in caplog.text
    assert spooled(spool) == []  # refused for good: retrying cannot help


def test_413_splits_the_batch() -> None:
    with FakeLunary(body_limit=6_000) as server:
        store = Path(os.environ["LUNATRACE_STORE"])
        send_to(server, store)
        expected = emit_traces(30)  # ~50 KB in one batch
        assert lunatrace.flush(10)
        assert 413 in {r.status for r in server.requests}
        assert_delivered_in_order(server, expected)
        assert_none_lost(server, store, expected)


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "Invalid API key"), (402, "Incorrect project id format"), (403, "Forbidden")],
)
def test_a_refused_key_stops_sending_and_keeps_everything(
    lunary_server: FakeLunary, spool: Path, caplog: pytest.LogCaptureFixture, status: int, message: str
) -> None:
    send_to(lunary_server, spool, batch_max_events=5)
    lunary_server.fail_next(1, status, {"message": message})
    with caplog.at_level(logging.ERROR, logger="lunatrace"):
        expected = emit_traces(10)
        assert lunatrace.flush(10)
        more = emit_traces(2)
        assert lunatrace.flush(10)
    assert len(lunary_server.requests) == 1  # sending stopped after the refusal
    assert keys_of(spooled(spool)) == expected + more
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"HTTP {status}: {message}" in errors[0].getMessage()
    assert lunary_server.key not in caplog.text and lunary_server.key[:4] in errors[0].getMessage()
    assert lunatrace.stats()["spooled"] == len(expected + more)


def test_an_unknown_key_is_refused_by_the_server(lunary_server: FakeLunary, spool: Path) -> None:
    send_to(lunary_server, spool, project_key="00000000-0000-4000-8000-000000000000")
    expected = emit_traces(3)
    assert lunatrace.flush(10)
    assert lunary_server.requests[0].status == 401
    assert keys_of(spooled(spool)) == expected


def test_server_down_then_up_sends_the_spool_first(lunary_server: FakeLunary, spool: Path) -> None:
    send_to(lunary_server, spool, retry_timeout=0.5, batch_max_events=10)
    lunary_server.stop()
    while_down = emit_traces(10, label="down")
    assert lunatrace.flush(10)
    assert keys_of(spooled(spool)) == while_down
    lunary_server.start()
    after = emit_traces(10, label="up")
    deadline = time.monotonic() + 15
    while len(lunary_server.events) < len(while_down + after) and time.monotonic() < deadline:
        lunatrace.flush(1)
        time.sleep(0.1)
    assert keys_of(lunary_server.events) == while_down + after
    assert_delivered_in_order(lunary_server, while_down + after)
    assert spooled(spool) == []


def test_flush_gives_up_at_its_timeout_and_shutdown_keeps_the_rest(
    lunary_server: FakeLunary, spool: Path
) -> None:
    send_to(lunary_server, spool, retry_timeout=30)
    lunary_server.stop()
    expected = emit_traces(20)
    started = time.monotonic()
    assert lunatrace.flush(0.5) is False
    lunatrace.shutdown(timeout=0.5)
    assert time.monotonic() - started < 3.0
    assert keys_of(spooled(spool)) == expected


def test_shutdown_does_not_wait_for_a_hung_request(lunary_server: FakeLunary, spool: Path) -> None:
    send_to(lunary_server, spool, http_timeout=30, retry_timeout=30)
    lunary_server.delay = 5.0
    expected = emit_traces(5)
    time.sleep(0.3)  # the request is now in flight
    started = time.monotonic()
    lunatrace.shutdown(timeout=0.5)
    assert time.monotonic() - started < 2.0
    assert keys_of(spooled(spool)) == expected


def test_a_full_queue_drops_and_counts_without_blocking(lunary_server: FakeLunary, spool: Path) -> None:
    send_to(lunary_server, spool, queue_size=50, retry_timeout=30)
    lunary_server.delay = 1.0
    started = time.monotonic()
    emit_traces(100)
    assert time.monotonic() - started < 1.0
    stats = lunatrace.stats()
    assert stats["dropped"] > 0
    assert stats["queued"] + stats["dropped"] == 600
    sink = lunatrace.get_tracer().sink
    lunatrace.shutdown(timeout=0.5)
    final = sink.stats()  # type: ignore[attr-defined]
    assert final["sent"] + final["spooled"] == stats["queued"]  # every accepted event accounted for
    assert len(lunary_server.events) + len(spooled(spool)) >= final["sent"] + final["spooled"]


def test_the_queue_is_bounded_by_the_memory_its_events_hold(lunary_server: FakeLunary, spool: Path) -> None:
    # Large events: the count bound (100,000) would hold gigabytes; the memory bound
    # (here 4 MB) takes over once the worker has seen what an event weighs.
    send_to(lunary_server, spool, queue_max_bytes=4_000_000, retry_timeout=60)
    lunary_server.delay = 30.0  # the first request hangs: everything after it queues
    tracer = lunatrace.get_tracer()
    first = tracer.start_run("tool", "first", "x" * 40_000)
    tracer.end_run(first, "y" * 40_000)
    time.sleep(0.5)  # the worker encodes it (and learns its weight), then waits on the server
    tracemalloc.start()
    for i in range(2_000):  # 160 MB of payloads, if they were all kept
        tracer.end_run(tracer.start_run("tool", f"big-{i}", str(i) * 20_000), str(i) * 20_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    stats = lunatrace.stats()
    assert stats["dropped"] > 3_000
    assert peak < 25_000_000, f"{peak / 1e6:.0f} MB held for a 4 MB queue bound"
    lunatrace.shutdown(timeout=0.5)


def test_a_long_outage_spools_instead_of_filling_the_queue(lunary_server: FakeLunary, spool: Path) -> None:
    send_to(lunary_server, spool, queue_size=100, batch_max_events=20, retry_timeout=60)
    lunary_server.stop()
    expected = []
    for _ in range(20):  # a steady stream, far more than the queue holds
        expected += emit_traces(5)
        time.sleep(0.05)
    assert lunatrace.flush(10)
    assert lunatrace.stats()["dropped"] == 0
    assert keys_of(spooled(spool)) == expected


def test_events_after_shutdown_are_dropped(lunary_server: FakeLunary, spool: Path) -> None:
    send_to(lunary_server, spool)
    sink = lunatrace.get_tracer().sink
    lunatrace.shutdown()
    sink.emit({"type": "chain", "event": "start", "runId": "x"})
    assert sink.stats()["dropped"] == 1  # type: ignore[attr-defined]


def test_an_invalid_event_is_counted_not_sent(lunary_server: FakeLunary, spool: Path) -> None:
    send_to(lunary_server, spool)
    sink = lunatrace.get_tracer().sink
    sink.emit({"type": "nonsense", "event": "start", "runId": "x"})
    assert lunatrace.flush(5)
    assert lunatrace.stats()["failed"] == 1 and lunary_server.requests == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_delivers_its_own_events_once(lunary_server: FakeLunary, spool: Path) -> None:
    send_to(lunary_server, spool, flush_interval=5.0)
    parent_keys = emit_traces(3, label="parent")  # still queued at the fork
    pid = os.fork()
    if pid == 0:
        try:
            emit_traces(2, label="child")
            os._exit(0 if lunatrace.flush(5) else 1)
        except BaseException:  # noqa: BLE001 - a forked child must never return into pytest
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert lunatrace.flush(5)
    names = [e["name"] for e in lunary_server.events if e["event"] == "start" and e["type"] == "chain"]
    assert sorted(names) == ["child-0", "child-1", "parent-0", "parent-1", "parent-2"]
    assert set(parent_keys) <= set(keys_of(lunary_server.events))
    assert len(keys_of(lunary_server.events)) == len(set(keys_of(lunary_server.events)))


def test_the_worker_wakes_early_only_for_a_quarter_full_queue(lunary_server: FakeLunary, spool: Path) -> None:
    # Long timer: only the queue's fill level can wake the worker before it.
    send_to(lunary_server, spool, flush_interval=30.0, queue_size=2_400, batch_max_events=100)
    emit_traces(1)  # the first event starts the worker, which then sleeps on its timer
    emit_traces(80)  # 486 events in all: several full batches, under a quarter of the queue
    time.sleep(0.5)
    assert lunary_server.events == []  # not woken for each full batch
    emit_traces(40)  # 726 events: past a quarter (600)
    deadline = time.monotonic() + 5
    while len(lunary_server.events) < 600 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(lunary_server.events) >= 600
    assert lunatrace.flush(5)
    assert len(lunary_server.events) == 121 * 6


class Stamped:
    """A payload whose conversion (its ``repr``) notes when the worker encoded it."""

    encoded_at: ClassVar[list[float]] = []

    def __repr__(self) -> str:
        Stamped.encoded_at.append(time.monotonic())
        return "stamped"


def test_the_next_batch_is_encoded_while_the_previous_one_is_sent(
    lunary_server: FakeLunary, spool: Path
) -> None:
    # The worker wakes only when 100 events are queued (a quarter of the queue; its timer is
    # 30 s): each batch is taken whole, whatever the machine's load, and never a part of
    # one whose hand-off would have to wait for the first request's answer.
    send_to(
        lunary_server, spool, batch_max_events=100, flush_interval=30.0, queue_size=400, http_timeout=10.0
    )
    lunary_server.slow_next(1, 1.0)  # the first request takes a second to answer
    tracer = lunatrace.get_tracer()
    Stamped.encoded_at = []
    for i in range(50):  # the first batch (100 events)
        tracer.end_run(tracer.start_run("tool", f"a{i}", None), None)
    time.sleep(0.3)  # it is on its way
    sent_at = time.monotonic()
    for i in range(50):  # the next batch: encoded during the first request, not after it
        tracer.end_run(tracer.start_run("tool", f"b{i}", Stamped()), None)
    assert lunatrace.flush(10)
    assert len(Stamped.encoded_at) == 50
    assert max(Stamped.encoded_at) < sent_at + 0.7
    assert lunatrace.stats()["sent"] == 200
