"""Store benchmark: search and filters at 100,000 traces, what indexing costs an append,
and how long the in-place migration of a previous release's store takes.

Run: .venv/bin/python benchmarks/store_search.py [--traces 100000] [--repeat 5]

A store is filled the way the worker fills it (``EventStore.append``, batches of 500
events) with ``--traces`` support conversations: a chain around one llm call, 4 events
each, every 20th failing, the questions and answers drawn from a few hundred words (so a
common word matches thousands of traces and a rare one a handful). Figures:

- **append**: µs per event with this release's summary and search index, against the
  same appends with that indexing left out (what the previous release did): the ratio
  is what indexing on append costs the worker;
- **queries**: ms for what the viewer's list does per page (the page's 25 traces plus
  the count of all matches), median of ``--repeat``;
- **migration**: the store taken back to the previous release's schema, then opened the
  way ``lunatrace ui``/``traces`` open it (schema change, then every event indexed in
  chunks of 2,000, each its own short write transaction).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lunatrace.core.timestamps import format_timestamp  # noqa: E402
from lunatrace.core.transport.store import INDEX_CHUNK, EventStore, open_existing  # noqa: E402
from tests.support.previous_store import as_previous_release  # noqa: E402

BATCH = 500
START_MS = 1_780_000_000_000
TOPICS = [f"topic{n}" for n in range(300)]
RARE = "zanzibar"  # in 10 traces


def event(kind: str, run_type: str, run_id: str, ms: int, **fields: Any) -> dict[str, Any]:
    return {"type": run_type, "event": kind, "runId": run_id, "timestamp": format_timestamp(ms), **fields}


def conversation(n: int, rng: random.Random) -> list[dict[str, Any]]:
    root, llm = str(uuid.uuid4()), str(uuid.uuid4())
    at = START_MS + n * 1000
    words = " ".join(rng.choice(TOPICS) for _ in range(8))
    question = f"Customer {n} asks about {words}" + (f" and {RARE}" if is_rare(n) else "")
    answer = f"Here is what we know about {rng.choice(TOPICS)} and {rng.choice(TOPICS)}."
    prompt = [{"role": "user", "content": question}]
    events = [
        event(
            "start",
            "chain",
            root,
            at,
            name="RunnableSequence",
            input={"question": question},
            tags=["support"],
        ),
        event("start", "llm", llm, at + 5, parentRunId=root, name="gpt-4o-mini", input=prompt),
    ]
    if n % 20 == 0:
        error = {"message": "RateLimitError: slow down", "stack": ""}
        return [
            *events,
            event("error", "llm", llm, at + 300, error=error),
            event("error", "chain", root, at + 310, error=error),
        ]
    usage = {"prompt": 900, "completion": 120}
    reply = {"role": "assistant", "content": answer}
    return [
        *events,
        event("end", "llm", llm, at + 800, output=reply, tokensUsage=usage),
        event("end", "chain", root, at + 810, output=answer),
    ]


def is_rare(n: int) -> bool:
    return n % 10_000 == 7  # 10 traces in 100,000


def fill(stores: list[EventStore], traces: int) -> list[float]:
    """Append every conversation in batches to each store in turn (so a machine busy with
    something else slows them alike); µs per event for each."""
    rng = random.Random(7)
    spent = [0.0] * len(stores)
    pending: list[dict[str, Any]] = []
    events = 0
    for n in range(traces):
        pending.extend(conversation(n, rng))
        if len(pending) >= BATCH or n == traces - 1:
            for index, store in enumerate(stores):
                started = time.perf_counter()
                store.append(pending, delivered=False, local=True)
                spent[index] += time.perf_counter() - started
            events += len(pending)
            pending = []
    return [seconds / events * 1e6 for seconds in spent]


def median_ms(repeat: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lunatrace-bench-search-"))

    baseline = EventStore(folder / "previous.db")
    baseline._index = lambda db, events: None  # type: ignore[method-assign]  # the previous release's work
    store = EventStore(folder / "events.db")
    before, after = fill([baseline, store], args.traces)
    baseline.close()
    print(f"append, {args.traces} traces ({args.traces * 4} events, batches of {BATCH}):")
    print(f"  without the index {before:6.1f} µs/event, with it {after:6.1f} µs/event: x{after / before:.2f}")

    queries: dict[str, dict[str, Any]] = {
        "no filter (newest page)": {},
        "search a common word (topic7)": {"search": "topic7"},
        "search two words (topic7 topic8)": {"search": "topic7 topic8"},
        f"search a rare word ({RARE})": {"search": RARE},
        'search a phrase ("asks about topic1")': {"search": '"asks about topic1"'},
        "search a word prefix (zanz)": {"search": "zanz"},
        "search a word in no trace": {"search": "nowhere"},
        "with errors": {"errors": True},
        "time range (an hour)": {"since_ms": START_MS + 3_600_000, "until_ms": START_MS + 7_200_000},
        "search + errors + time range": {"search": "topic7", "errors": True, "since_ms": START_MS},
    }
    print(f"\nqueries at {args.traces} traces, one list page (25) + its count, median of {args.repeat}:")
    for label, filters in queries.items():
        found = store.count_traces(**filters)

        def page(filters: dict[str, Any] = filters) -> None:
            store.list_traces(limit=25, **filters)
            store.count_traces(**filters)

        print(f"  {label:40s} {median_ms(args.repeat, page):8.1f} ms  ({found} traces match)")
    store.close()

    as_previous_release(folder / "events.db")
    started = time.perf_counter()
    migrated = open_existing(folder / "events.db")
    seconds = time.perf_counter() - started
    events = args.traces * 4
    chunks = -(-events // INDEX_CHUNK)
    print(f"\nmigration of a previous release's store ({events} events):")
    print(
        f"  {seconds:.1f} s ({seconds / events * 1e6:.0f} µs/event), {chunks} write transactions"
        f" of {INDEX_CHUNK} events, {seconds / chunks * 1000:.0f} ms each on average"
    )
    assert migrated.count_traces(search=RARE) == sum(1 for n in range(args.traces) if is_rare(n))
    migrated.close()
    shutil.rmtree(folder)  # two stores of a few hundred MB at the default size


if __name__ == "__main__":
    main()
