"""Delivery benchmark: caller-side cost of ``emit``, delivery throughput to a local server,
and memory while the server is down.

Run: .venv/bin/python benchmarks/transport.py [--events 50000]

The server is a bare endpoint in its own process (``bare_server.py``) that answers every
event as stored, so the figures are lunatrace's. Baselines measured in the same run: a
bare ``deque.append`` (the floor for a non-blocking hand-off), the worker's encoding
alone (``wire_json``, no network), and the memory of ``queue_size`` raw events held in a
plain list (what a full queue must cost at most).
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import tempfile
import time
import tracemalloc
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bare_server import running  # noqa: E402
from lunatrace.core.config import Config  # noqa: E402
from lunatrace.core.events import TIMESTAMP_KEY, MonotonicClock, build, new_run_id, wire_json  # noqa: E402
from lunatrace.core.serialize import FieldEncoder  # noqa: E402
from lunatrace.core.transport import make_sink  # noqa: E402

# A key shaped like the real server's (a UUID): it answers 401 to any other token.
BENCH_KEY = "0b3c5e8a-6d41-4f2a-9c77-1e2d3f4a5b6c"


def raw_events(count: int) -> list[dict[str, Any]]:
    return list(iter_raw_events(count))


def iter_raw_events(count: int) -> Iterator[dict[str, Any]]:
    """Realistic raw events (an llm run's start and end, pairs), stamped like the tracer does."""
    clock = MonotonicClock()
    for i in range(count // 2):
        rid = new_run_id()
        start = build(
            "start", "llm", rid, name="gpt-4o", input=[{"role": "user", "content": f"question {i}"}]
        )
        end = build(
            "end",
            "llm",
            rid,
            output={"role": "assistant", "content": "an answer " * 5},
            tokens_usage={"prompt": 12, "completion": 30},
        )
        for event in (start, end):
            event[TIMESTAMP_KEY] = clock.ms_at(time.perf_counter_ns())
            yield event


def per_call_us(fn: Any, items: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - started) / len(items) * 1e6


def bench_emit(count: int, key: str, url: str, store: Path) -> tuple[float, float]:
    """Microseconds per ``emit`` on the caller's thread, and per bare ``deque.append``."""
    events = raw_events(count)
    floor = per_call_us(deque().append, events)
    config = Config.resolve(env={}, project_key=key, api_url=url, store_path=store, queue_size=count + 1)
    sink = make_sink(config, FieldEncoder(config.max_field_bytes))
    sink.emit(events[0])  # start the worker outside the measurement
    emit_us = per_call_us(sink.emit, events[1:])
    sink.shutdown(30)
    return emit_us, floor


def bench_delivery(count: int, key: str | None, url: str, store: Path) -> tuple[float, float]:
    """Events/s from the first emit until flush() returns (to the server, or with no key to
    the local store), and the worker's encoding alone."""
    events = raw_events(count)
    encoder = FieldEncoder(64_000)
    started = time.perf_counter()
    for event in events:
        wire_json(event, encoder)
    encode_rate = count / (time.perf_counter() - started)
    config = Config.resolve(
        env={}, project_key=key, api_url=url, store_path=store, queue_size=count + 1, flush_interval=0.05
    )
    sink = make_sink(config, encoder)
    started = time.perf_counter()
    for event in events:
        sink.emit(event)
    assert sink.flush(120), "delivery did not finish"
    rate = count / (time.perf_counter() - started)
    stats = sink.stats()  # type: ignore[attr-defined]
    sent = stats["sent"] if key else stats["stored"]
    assert sent == count, f"{sent} of {count} delivered"
    sink.shutdown(5)
    return rate, encode_rate


def bench_memory_when_down(count: int, url: str, store: Path) -> tuple[int, int, int]:
    """Peak memory while ``count`` freshly built events are emitted to a dead server, and the
    memory of ``queue_size`` raw events in a list (the most a full queue should hold)."""
    config = Config.resolve(
        env={}, project_key=BENCH_KEY, api_url=url, store_path=store, retry_timeout=60, http_timeout=1
    )
    gc.collect()
    tracemalloc.start()
    held = raw_events(config.queue_size)
    list_bytes = tracemalloc.get_traced_memory()[0]
    del held
    gc.collect()
    sink = make_sink(config, FieldEncoder(config.max_field_bytes))
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    for event in iter_raw_events(count):
        sink.emit(event)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    dropped = sink.stats()["dropped"]  # type: ignore[attr-defined]
    sink.shutdown(0.5)
    return peak, list_bytes, dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    logging.getLogger("lunatrace").setLevel(logging.ERROR)  # the expected drop warnings
    key = BENCH_KEY
    with running(key) as url, tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "events.db"
        emit_us, floor_us = bench_emit(args.events, key, url, store)
        print(
            f"emit (caller's thread):     {emit_us:6.2f} µs/event   "
            f"deque.append {floor_us:.2f} µs  -> x{emit_us / floor_us:.1f}   target < 5 µs"
        )
        rate, encode_rate = bench_delivery(args.events, key, url, store)
        print(
            f"delivery to local server: {rate:8,.0f} events/s  encoding alone {encode_rate:,.0f}/s"
            f"  -> {rate / encode_rate:.2f} of it   target > 20,000/s"
        )
        rate, encode_rate = bench_delivery(args.events, None, url, store)
        print(
            f"no key, to the local store: {rate:6,.0f} events/s  encoding alone {encode_rate:,.0f}/s"
            f"  -> {rate / encode_rate:.2f} of it"
        )
    with tempfile.TemporaryDirectory() as tmp:
        peak, list_bytes, dropped = bench_memory_when_down(100_000, url, Path(tmp) / "events.db")
    print(
        f"server down, 100,000 emitted: peak {peak / 1e6:.1f} MB  ({dropped:,} dropped)  "
        f"{Config().queue_size:,} raw events in a list {list_bytes / 1e6:.1f} MB  "
        f"-> x{peak / list_bytes:.2f}"
    )


if __name__ == "__main__":
    main()
