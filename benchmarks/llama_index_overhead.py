"""What lunatrace's LlamaIndex instrumentation costs, against no-op span and event handlers.

Two operations, on LlamaIndex's own mocks:

* ``complete``: ``MockLLM.complete("...")`` (1 span, 2 events);
* ``query``: ``index.as_query_engine().query(...)`` over 3 documents with ``MockEmbedding``
  (15 spans, 14 events; 6 runs).

Configurations, measured in interleaved rounds so that machine noise hits all alike:

* ``none``: only LlamaIndex's default null handlers (the baseline);
* ``noop``: one span handler and one event handler that do nothing, on the root
  dispatcher, the way lunatrace registers;
* ``lunatrace``: :func:`lunatrace.integrations.llama_index.instrument`, delivering to a fake
  Lunary server in a *separate process* (its CPU is not counted, only the SDK's).

Two clocks: the calling thread's CPU time (``time.thread_time``: what the application
waits for) and the whole process's CPU time around the calls *and* ``lunatrace.flush()``
(the background worker included). The figure of merit is the cost per call with
lunatrace divided by the cost per call with the no-op handlers (target: at most 3.0);
the cost each adds over ``none`` is printed too. (On llama-index-instrumentation 0.6 the
no-op handlers add almost nothing over the default null handlers, so a ratio of the
*added* costs would divide by noise.)

Run: ``.venv/bin/python benchmarks/llama_index_overhead.py [--calls 2000] [--queries 300] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from langchain_overhead import start_server  # noqa: E402 - the same out-of-process fake server


def noop_handlers() -> tuple[Any, Any]:
    from llama_index_instrumentation.event_handlers import BaseEventHandler
    from llama_index_instrumentation.span import SimpleSpan
    from llama_index_instrumentation.span_handlers import BaseSpanHandler

    class NoopSpans(BaseSpanHandler[SimpleSpan]):
        def new_span(self, *args: Any, **kwargs: Any) -> None:
            return None

        def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
            return None

        def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
            return None

    class NoopEvents(BaseEventHandler):
        def handle(self, event: Any, **kwargs: Any) -> None:
            return None

    return NoopSpans(), NoopEvents()


class Configurations:
    """Switches the root dispatcher between the three configurations."""

    def __init__(self) -> None:
        from llama_index.core.instrumentation import get_dispatcher

        self.dispatcher = get_dispatcher()
        self.noop = noop_handlers()

    def use(self, name: str) -> None:
        from lunatrace.integrations.llama_index import instrument, uninstrument

        uninstrument()
        spans, events = self.noop
        self.dispatcher.span_handlers = [h for h in self.dispatcher.span_handlers if h is not spans]
        self.dispatcher.event_handlers = [h for h in self.dispatcher.event_handlers if h is not events]
        if name == "noop":
            self.dispatcher.add_span_handler(spans)
            self.dispatcher.add_event_handler(events)
        elif name == "lunatrace":
            instrument()


def measure(operation: Callable[[], Any], count: int) -> tuple[float, float]:
    """(calling-thread µs, process µs including the flush) per call."""
    import lunatrace

    gc.collect()
    thread0, process0 = time.thread_time(), time.process_time()
    for _ in range(count):
        operation()
    thread1 = time.thread_time()
    lunatrace.flush(60)
    process1 = time.process_time()
    return (thread1 - thread0) / count * 1e6, (process1 - process0) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="MockLLM.complete calls per round")
    parser.add_argument("--queries", type=int, default=300, help="queries per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import lunatrace
    from tests.integrations import li_fakes

    key = str(uuid.uuid4())
    server, url = start_server(key)
    spool = tempfile.TemporaryDirectory(prefix="lunatrace-bench-")
    try:
        lunatrace.configure(project_key=key, api_url=url, store_path=Path(spool.name) / "events.db")
        li_fakes.use_mock_models()
        index = li_fakes.build_index()
        engine = index.as_query_engine()
        llm = li_fakes.Settings.llm
        operations = {
            "complete": (lambda: llm.complete("Say hello to the benchmark."), args.calls),
            "query": (lambda: engine.query("What do cats do?"), args.queries),
        }
        configs = Configurations()
        names = ("none", "noop", "lunatrace")
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for name in names:  # warm-up: imports, tiktoken, caches
            configs.use(name)
            for operation, count in operations.values():
                measure(operation, max(10, count // 20))
        for _ in range(args.rounds):
            for name in names:
                configs.use(name)
                for op_name, (operation, count) in operations.items():
                    results.setdefault((op_name, name), []).append(measure(operation, count))
        configs.use("none")
        report(results, args.rounds)
    finally:
        lunatrace.shutdown(10)
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
        spool.cleanup()


def report(results: dict[tuple[str, str], list[tuple[float, float]]], rounds: int) -> None:
    print(f"median of {rounds} interleaved rounds; µs per call (CPU time)")
    for op_name in ("complete", "query"):
        medians = {
            name: (
                statistics.median(r[0] for r in results[(op_name, name)]),
                statistics.median(r[1] for r in results[(op_name, name)]),
            )
            for name in ("none", "noop", "lunatrace")
        }
        for clock, index in (("calling thread", 0), ("whole process", 1)):
            none, noop, ours = (medians[n][index] for n in ("none", "noop", "lunatrace"))
            print(
                f"{op_name:8} {clock:14}  none {none:8.1f}  noop {noop:8.1f} ({noop - none:+6.1f})"
                f"  lunatrace {ours:8.1f} ({ours - none:+6.1f})  -> lunatrace/noop x{ours / noop:4.2f}"
            )


if __name__ == "__main__":
    main()
