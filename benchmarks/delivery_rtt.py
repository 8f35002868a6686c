"""Delivery over a slow network: a producer tracing a LangChain chain at a steady rate,
against an ingestion endpoint that answers each request after a round trip.

The 3-step chain of ``langchain_overhead.py`` (8 events per invoke) is invoked at
``--rate`` invokes a second for ``--seconds``, with lunatrace's defaults, delivering to
``bare_server.py`` in a process of its own with ``--rtt`` seconds of latency per request.
One request is in flight at a time (the server orders events only within a request), so
the round trip bounds how many events a request must carry: what does not keep up piles
up in the queue, and a full queue drops. Printed: the rate reached, events queued, sent,
dropped, the requests made and their average size, and how long the final flush took.

Run: ``.venv/bin/python benchmarks/delivery_rtt.py [--rate 1000] [--seconds 8] [--rtt 0.1]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bare_server import running  # noqa: E402
from benchmarks.langchain_overhead import build_chain  # noqa: E402

BENCH_KEY = "0b3c5e8a-6d41-4f2a-9c77-1e2d3f4a5b6c"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1_000.0, help="invokes per second")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rtt", type=float, default=0.1, help="seconds before each answer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running(BENCH_KEY, latency=args.rtt) as url:
        run(url, Path(tmp), args.rate, args.seconds, args.rtt)


def run(url: str, tmp: Path, rate: float, seconds: float, rtt: float) -> None:
    import lunatrace
    from lunatrace.integrations.langchain import CallbackHandler

    lunatrace.configure(project_key=BENCH_KEY, api_url=url, store_path=tmp / "spool.db")
    chain = build_chain()
    config = {"callbacks": [CallbackHandler()]}
    chain.invoke({"word": "warm"}, config=config)
    lunatrace.flush(10)
    begin = time.monotonic()
    invokes = 0
    while (now := time.monotonic()) < begin + seconds:
        due = begin + invokes / rate
        if due > now:
            time.sleep(due - now)
        chain.invoke({"word": "hi"}, config=config)
        invokes += 1
    produced = time.monotonic() - begin
    flush_begin = time.monotonic()
    flushed = lunatrace.flush(120)
    flush_s = time.monotonic() - flush_begin
    stats = lunatrace.stats()
    destination = lunatrace.get_tracer().sink.destination  # type: ignore[attr-defined]
    requests = destination.main.requests + destination.lane.requests
    settings = lunatrace.get_tracer().config
    print(
        f"round trip {rtt * 1000:.0f} ms, target {rate:.0f} invokes/s for {seconds:.1f} s"
        f" (queue_size {settings.queue_size}, batch_max_events {settings.batch_max_events},"
        f" batch_max_bytes {settings.batch_max_bytes})"
    )
    print(
        f"invokes: {invokes} in {produced:.2f} s ({invokes / produced:.0f}/s,"
        f" {8 * invokes / produced:.0f} events/s)"
    )
    print(
        f"events: queued {stats['queued']}, sent {stats['sent']}, dropped {stats['dropped']}"
        f" ({100 * stats['dropped'] / max(1, stats['queued'] + stats['dropped']):.1f}%)"
    )
    print(
        f"requests: {requests}, {stats['sent'] / max(1, requests):.0f} events each on average;"
        f" final flush {flush_s:.2f} s (flush() {flushed}: False once events were dropped)"
    )
    lunatrace.shutdown(10)


if __name__ == "__main__":
    main()
