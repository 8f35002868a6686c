"""Run every part of the demo through the normal tracing path and print each trace.

Events go wherever lunatrace is configured to send them: the local store when no key is
set, a Lunary server otherwise. To print the trees in both cases, the demo also keeps a
copy of the exact wire events it produced (a tee in front of the real sink); with the
local store the trees are read back from the store, as ``lunatrace show`` would.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import lunatrace
from lunatrace.core.events import RawEvent, complete
from lunatrace.core.transport import MemorySink, Sink
from lunatrace.view.model import Trace, build_trace
from lunatrace.view.text import plural, render_text


class _Tee:
    """Hands each event to the real sink and keeps a wire copy for printing.

    A queued record is built once, here (building a framework's record opens or closes
    its run: twice would lose the second copy's end), and both sinks get the event.
    """

    def __init__(self, sink: Sink, copy: MemorySink) -> None:
        self.sink = sink
        self.copy = copy

    def emit(self, event: RawEvent) -> None:
        built = complete(event)
        if built is not None:
            self.sink.emit(dict(built))
            self.copy.emit(dict(built))

    def every_tick(self, task: Callable[[], None]) -> None:
        self.sink.every_tick(task)

    def flush(self, timeout: float | None = None) -> bool:
        return self.sink.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        return self.sink.shutdown(timeout)


@dataclass
class Part:
    title: str
    run: Callable[[], Any]
    extra: str


def _parts() -> list[Part]:
    # Imported one by one so a missing framework only skips its own part.
    def agent() -> Any:
        from lunatrace.demo.langchain_demo import run_agent

        return run_agent()

    def graph() -> Any:
        from lunatrace.demo.langchain_demo import run_graph

        return run_graph()

    def rag() -> Any:
        from lunatrace.demo.llama_index_demo import run_rag

        return run_rag()

    def thread() -> Any:
        from lunatrace.demo.thread_demo import run_thread

        run_thread()
        return None

    return [
        Part("LangChain agent: create_agent with two tools", agent, "langchain"),
        Part("LangGraph graph: classify a ticket, then route it", graph, "langchain"),
        Part("LlamaIndex RAG query over the bundled documents", rag, "llama-index"),
        Part("A two-message thread with user feedback", thread, "langchain"),
    ]


@dataclass
class DemoResult:
    traces: list[Trace]
    failed: list[str]


def run_demo(full: bool = False, out: TextIO | None = None) -> DemoResult:
    """Run the demo, print each trace as a tree, and say where to look next."""
    stream = out or sys.stdout
    tracer = lunatrace.get_tracer()
    config = tracer.config
    where = (
        f"sending to the Lunary server at {config.shown('api_url')}"
        if config.uses_server
        else f"offline: no Lunary key set, events are kept in {config.store_path}"
    )
    print(f"lunatrace demo ({where})\n", file=stream)
    copy = MemorySink(tracer.encoder)
    original, tracer.sink = tracer.sink, _Tee(tracer.sink, copy)
    traces: list[Trace] = []
    failed: list[str] = []
    parts = _parts()
    try:
        for number, part in enumerate(parts, 1):
            print(f"[{number}/{len(parts)}] {part.title}", file=stream, flush=True)
            before = len(copy.events)
            started = time.perf_counter()
            try:
                answer = part.run()
            except ImportError as exc:
                failed.append(part.title)
                print(
                    f"  skipped: {exc}; install it with: pip install 'lunatrace[{part.extra}]'\n", file=stream
                )
                continue
            except Exception as exc:  # noqa: BLE001 - report the part and go on with the others
                failed.append(part.title)
                print(f"  failed: {type(exc).__name__}: {exc}\n", file=stream)
                continue
            elapsed = time.perf_counter() - started
            shown, kept = _traces_of(copy.events[before:], config.uses_server)
            if not kept:
                failed.append(part.title)
                print(f"  not kept in {config.store_path} (see above why); shown as traced:", file=stream)
            for trace in shown:
                traces.append(trace)
                print(render_text(trace, full=full), file=stream)
            if answer is not None:
                print(f"  answer: {answer}", file=stream)
            print(f"  ({elapsed:.1f}s)\n", file=stream, flush=True)
    finally:
        tracer.sink = original
    lunatrace.flush()
    _next_steps(traces, len(parts), config.uses_server, stream)
    return DemoResult(traces, failed)


def _traces_of(events: list[dict[str, Any]], uses_server: bool) -> tuple[list[Trace], bool]:
    """The traces among ``events``, read back from the store when local (so the demo shows
    what ``lunatrace show`` will), else from the copy; and whether the store kept them. When
    it did not (a damaged store, a full disk: the sink has logged why), the demo shows the
    copy and says so instead of failing."""
    assembled = build_trace(events)
    copies = [
        Trace(id=root.id, roots=[root], runs={run.id: run for run, _ in root.walk()})
        for root in assembled.roots
    ]
    if uses_server:
        return copies, True
    from lunatrace.core.transport.store import StoreError
    from lunatrace.view.load import TraceNotFound, load_trace

    lunatrace.flush()
    store_path = lunatrace.get_tracer().config.store_path
    try:
        return [load_trace(store_path, trace.id) for trace in copies], True
    except (TraceNotFound, StoreError):
        return copies, False


def _next_steps(traces: list[Trace], steps: int, uses_server: bool, stream: TextIO) -> None:
    first = traces[0].id if traces else "<trace id>"
    recorded = plural(len(traces), "trace") + " recorded"
    if len(traces) != steps:  # LlamaIndex's index build is a trace of its own
        recorded += f" by {plural(steps, 'step')} (building the LlamaIndex index is a trace of its own)"
    lines = [f"{recorded}. Where to look next:"]
    if uses_server:
        lines.append("  your Lunary dashboard: the traces, threads and feedback are there now")
    lines += [
        f"  lunatrace show {first}",
        "      one trace as a tree (--full for whole inputs and outputs; no id: the latest trace)",
        "  lunatrace ui",
        "      every trace in your browser, at http://127.0.0.1:8765/",
        "  lunatrace.show()",
        "      the same view inline in a notebook: see notebooks/*.ipynb",
    ]
    if not uses_server:
        lines += [
            "  Lunary: set LUNARY_PUBLIC_KEY (and LUNARY_API_URL for a self-hosted server) and run",
            "      again, or upload what is stored here with: lunatrace push",
        ]
    print("\n".join(lines), file=stream)
