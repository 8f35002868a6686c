"""Assemble wire events back into a trace: a tree of runs with their status and timing.

The viewers (terminal tree, notebook HTML, the local web UI) read events from the local
store, which keeps exactly what would be sent to Lunary. Those events can be incomplete
or out of order (a process killed mid-run, an ``end`` stored before its ``start``, a
feedback sent later from another process), so assembly never raises: it sorts what it
gets, fills the gaps with placeholder runs, and turns orphans and cycles into roots.

Threads follow the protocol: a ``chat`` event is one message (its ``runId``) in a thread
(its ``parentRunId``). The thread itself never has a ``start``, so it is synthesised
here, with one ``chat`` run per message and the work a message triggered beneath it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lunatrace.core.messages import INPUT_ROLES
from lunatrace.core.pricing import LlmCall, cost_of
from lunatrace.core.timestamps import parse_timestamp
from lunatrace.view.forest import link, span_threads

SUCCESS = "success"
ERROR = "error"
STARTED = "started"

# ``start`` first among events with the same timestamp: the protocol's order of processing.
_EVENT_RANK = {"start": 0, "chat": 0}


def format_duration(ms: int | None) -> str:
    """``850ms``, ``1.25s``, ``2m05s``: short and readable at any scale."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f}s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{minutes}m{seconds:02d}s"


@dataclass(eq=False)
class Run:
    """One run as the viewers show it; fields mirror the wire event's, merged over its life."""

    id: str
    type: str = "chain"
    name: str = ""
    parent_id: str | None = None
    status: str = STARTED
    start_ms: int | None = None
    end_ms: int | None = None
    input: Any = None
    output: Any = None
    error: Mapping[str, Any] | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    user_props: Mapping[str, Any] | None = None
    feedback: dict[str, Any] = field(default_factory=dict)
    children: list[Run] = field(default_factory=list)
    has_start: bool = False  # False: known only from a later event (shown as a placeholder)
    synthetic: bool = False  # a thread: never started on the wire, made up from its messages

    def __repr__(self) -> str:
        return f"Run({self.type} {self.name!r} {self.status}, id={self.id!r}, children={len(self.children)})"

    @property
    def duration_ms(self) -> int | None:
        if self.start_ms is None or self.end_ms is None:
            return None
        return max(0, self.end_ms - self.start_ms)

    @property
    def model(self) -> str | None:
        """The model id of an llm run (its name, as the protocol requires)."""
        if self.type != "llm":
            return None
        model = self.params.get("model") if isinstance(self.params, Mapping) else None
        return self.name or (str(model) if model else None)

    @property
    def total_tokens(self) -> int:
        return int(self.tokens.get("prompt", 0)) + int(self.tokens.get("completion", 0))

    @property
    def badge(self) -> str | None:
        """``interrupted`` (a LangGraph graph paused for a human), ``cancelled`` (the caller
        went away): ended runs that neither succeeded as asked nor failed."""
        for flag in ("interrupted", "cancelled"):
            if self.metadata.get(flag) is True:
                return flag
        return None

    @property
    def resumes(self) -> bool:
        """Whether the run resumes a paused one (a LangGraph ``Command(resume=...)``, filed
        under the run that paused)."""
        return self.parent_id is not None and isinstance(self.input, dict) and "resume" in self.input

    @property
    def tokens_estimated(self) -> bool:
        """Whether the token counts were estimated locally rather than reported by the model."""
        return bool(self.metadata.get("tokensEstimated"))

    @property
    def cost(self) -> float | None:
        """The cost in USD: ``metadata.cost`` when the application set one, else for an
        llm run what Lunary would charge (see :attr:`cost_estimated`); else unknown."""
        found = self._cost()
        return None if found is None else found[0]

    @property
    def cost_estimated(self) -> bool:
        """Whether :attr:`cost` is an estimate from Lunary's price table (:mod:`lunatrace.core.pricing`)."""
        found = self._cost()
        return found is not None and found[1]

    def _cost(self) -> tuple[float, bool] | None:
        priced = self.type == "llm" and self.status == SUCCESS and self.has_start
        call = (
            LlmCall(
                model=self.name,
                prompt_tokens=int(self.tokens.get("prompt", 0)),
                completion_tokens=int(self.tokens.get("completion", 0)),
                cached_prompt_tokens=int(self.tokens.get("promptCached", 0)),
                duration_ms=self.duration_ms,
                input=self.input,
                output=self.output,
            )
            if priced
            else None
        )
        return cost_of([self.metadata], call)

    def walk(self, depth: int = 0) -> Iterator[tuple[Run, int]]:
        """This run and its descendants, depth first, with their depth."""
        stack: list[tuple[Run, int]] = [(self, depth)]
        while stack:
            run, level = stack.pop()
            yield run, level
            stack.extend((child, level + 1) for child in reversed(run.children))


@dataclass(frozen=True)
class Span:
    """A trace's first and last timestamps: what every run's timeline bar is placed against."""

    start_ms: int | None
    end_ms: int | None

    @classmethod
    def of(cls, runs: Iterable[Run]) -> Span:
        """From the first start to the last start or end, in one pass over ``runs``."""
        start: int | None = None
        end: int | None = None
        for run in runs:
            for ts in (run.start_ms, run.end_ms):
                if ts is not None and (end is None or ts > end):
                    end = ts
            if run.start_ms is not None and (start is None or run.start_ms < start):
                start = run.start_ms
        return cls(start, end)

    @property
    def duration_ms(self) -> int | None:
        return None if self.start_ms is None or self.end_ms is None else self.end_ms - self.start_ms

    def offset_ms(self, run: Run) -> int | None:
        """How long after the trace's start the run started."""
        return None if self.start_ms is None or run.start_ms is None else run.start_ms - self.start_ms

    def place(self, run: Run) -> tuple[float, float]:
        """The run's offset and width as fractions of the span (for timeline bars).

        A run still open extends to the end of the trace; a run without timestamps gets a
        zero-width bar at the start.
        """
        start, end = self.start_ms, self.end_ms
        if start is None or end is None or run.start_ms is None:
            return 0.0, 0.0
        span = max(end - start, 1)
        run_end = run.end_ms if run.end_ms is not None else end
        offset = min(max((run.start_ms - start) / span, 0.0), 1.0)
        width = max(0, run_end - run.start_ms) / span
        return offset, min(max(width, 0.0), 1.0 - offset)


@dataclass(eq=False)
class Trace:
    """The runs of one trace, as a forest (normally a single root)."""

    id: str
    roots: list[Run]
    runs: dict[str, Run]

    def __repr__(self) -> str:
        return f"Trace(id={self.id!r}, name={self.name!r}, status={self.status!r}, runs={len(self.runs)})"

    @property
    def root(self) -> Run | None:
        return self.roots[0] if self.roots else None

    @property
    def name(self) -> str:
        return self.root.name if self.root else ""

    @property
    def type(self) -> str:
        return self.root.type if self.root else ""

    @property
    def status(self) -> str:
        """``error`` if a root failed, ``started`` if one is still open, else ``success``."""
        statuses = {run.status for run in self.roots}
        for status in (ERROR, STARTED):
            if status in statuses:
                return status
        return SUCCESS if statuses else STARTED

    def span(self) -> Span:
        """When the trace starts and ends. Each call looks at every run: a renderer takes
        it once and places every run against it."""
        return Span.of(self.runs.values())

    @property
    def start_ms(self) -> int | None:
        return self.span().start_ms

    @property
    def end_ms(self) -> int | None:
        return self.span().end_ms

    @property
    def duration_ms(self) -> int | None:
        return self.span().duration_ms

    @property
    def user_id(self) -> str | None:
        return next((r.user_id for r, _ in self.walk() if r.user_id), None)

    @property
    def llm_calls(self) -> int:
        return sum(1 for r in self.runs.values() if r.type == "llm")

    @property
    def errors(self) -> int:
        return sum(1 for r in self.runs.values() if r.status == ERROR)

    @property
    def tokens(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for run in self.runs.values():
            for key, value in run.tokens.items():
                total[key] = total.get(key, 0) + value
        return total

    @property
    def tokens_estimated(self) -> bool:
        """Whether any of the trace's token counts is a local estimate."""
        return any(run.tokens and run.tokens_estimated for run in self.runs.values())

    @property
    def cost(self) -> float | None:
        """The runs' costs added up; ``None`` when no run has one."""
        costs = [c for r in self.runs.values() if (c := r.cost) is not None]
        return sum(costs) if costs else None

    @property
    def cost_estimated(self) -> bool:
        """Whether any part of :attr:`cost` is an estimate."""
        return any(run.cost_estimated for run in self.runs.values())

    def walk(self) -> Iterator[tuple[Run, int]]:
        """Every run, depth first from each root, with its depth."""
        for root in self.roots:
            yield from root.walk()

    def find(self, name: str) -> list[Run]:
        """The runs named ``name``, in tree order."""
        return [run for run, _ in self.walk() if run.name == name]

    def timeline(self, run: Run) -> tuple[float, float]:
        """The run's offset and width as fractions of the whole trace (see :meth:`Span.place`)."""
        return self.span().place(run)

    def __str__(self) -> str:
        from lunatrace.view.text import render_text

        return render_text(self)

    def _repr_html_(self) -> str:
        from lunatrace.view.html import render_html

        return render_html(self)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


class _Assembler:
    """Folds events, in processing order, into :class:`Run` objects."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}

    def run(self, run_id: str, run_type: Any = None) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            run = Run(id=run_id, type=str(run_type or "chain"), name="")
            self.runs[run_id] = run
        return run

    def apply(self, event: Mapping[str, Any]) -> None:
        run_id = event.get("runId")
        if not run_id:
            return
        kind = event.get("event")
        ts = parse_timestamp(event.get("timestamp"))
        if kind == "chat":
            self._message(str(run_id), event, ts)
            return
        run = self.run(str(run_id), event.get("type"))
        if kind == "start":
            self._start(run, event, ts)
        elif kind in ("end", "error"):
            self._finish(run, event, ts)
        elif kind == "feedback" and isinstance(event.get("feedback"), Mapping):
            run.feedback.update(event["feedback"])
        elif kind == "update":
            self._merge(run, event)

    def _start(self, run: Run, event: Mapping[str, Any], ts: int | None) -> None:
        run.has_start = True
        run.type = str(event.get("type") or run.type)
        run.name = str(event.get("name") or run.name)
        run.parent_id = _str_or_none(event.get("parentRunId"))
        run.start_ms = ts
        if isinstance(event.get("params"), Mapping):
            run.params = event["params"]
        tags = event.get("tags")
        if isinstance(tags, list):
            run.tags = [str(t) for t in tags]
        if event.get("userId") is not None:
            run.user_id = str(event["userId"])
            props = event.get("userProps")
            run.user_props = props if isinstance(props, Mapping) else None
        self._merge(run, event)

    def _finish(self, run: Run, event: Mapping[str, Any], ts: int | None) -> None:
        if event.get("event") == "error":
            run.status = ERROR
            error = event.get("error")
            run.error = error if isinstance(error, Mapping) else {"message": str(error or "")}
        elif run.status != ERROR:
            run.status = SUCCESS
        run.end_ms = ts if run.end_ms is None or ts is None else max(run.end_ms, ts)
        self._merge(run, event)

    def _merge(self, run: Run, event: Mapping[str, Any]) -> None:
        """Fields any event may carry: later values win, as on the server."""
        if event.get("input"):
            run.input = event["input"]
        if "output" in event:
            run.output = event["output"]
        if isinstance(event.get("metadata"), Mapping):
            run.metadata.update(event["metadata"])
        usage = event.get("tokensUsage")
        if isinstance(usage, Mapping):
            run.tokens = {
                str(k): int(v)
                for k, v in usage.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }

    def _message(self, message_id: str, event: Mapping[str, Any], ts: int | None) -> None:
        thread_id = _str_or_none(event.get("parentRunId"))
        raw_message = event.get("message")
        message: Mapping[str, Any] = raw_message if isinstance(raw_message, Mapping) else {}
        role = str(message.get("role") or "user")
        run = self.run(message_id, "chat")
        run.type, run.name, run.status, run.has_start = "chat", role, SUCCESS, True
        run.start_ms = run.end_ms = ts
        run.parent_id = thread_id
        if role in INPUT_ROLES:
            run.input = dict(message)
        else:
            run.output = dict(message)
        if isinstance(message.get("metadata"), Mapping):
            run.metadata.update(message["metadata"])
        if isinstance(message.get("tags"), list):
            run.tags = [str(t) for t in message["tags"]]
        if event.get("userId") is not None:
            run.user_id = str(event["userId"])
        if thread_id is not None:
            self._thread(thread_id, event)

    def _thread(self, thread_id: str, event: Mapping[str, Any]) -> None:
        thread = self.run(thread_id, "thread")
        thread.type, thread.synthetic, thread.status = "thread", True, SUCCESS
        thread.name = thread.name or "thread"
        tags = event.get("threadTags")
        if isinstance(tags, list):
            thread.tags = [str(t) for t in tags]
        if event.get("userId") is not None:
            thread.user_id = str(event["userId"])


def _sort_key(indexed: tuple[int, Mapping[str, Any]]) -> tuple[int, int, int]:
    index, event = indexed
    ts = parse_timestamp(event.get("timestamp"))
    return (ts if ts is not None else 0, _EVENT_RANK.get(str(event.get("event")), 1), index)


def _by_start(run: Run) -> int:
    return run.start_ms if run.start_ms is not None else 0


def build_trace(events: Iterable[Mapping[str, Any]], trace_id: str | None = None) -> Trace:
    """A :class:`Trace` from wire events in any order; never raises on odd input.

    ``trace_id`` defaults to the first root's id.
    """
    assembler = _Assembler()
    usable = [e for e in events if isinstance(e, Mapping)]
    for _, event in sorted(enumerate(usable), key=_sort_key):
        assembler.apply(event)
    runs = assembler.runs
    roots = link(runs)
    for run in runs.values():
        if not run.name:  # known only from an end, error or feedback
            run.name = f"({run.type} {run.id[:8]})"
    span_threads(roots)
    for run in runs.values():
        run.children.sort(key=_by_start)  # stable: ties keep the order of the events
    roots.sort(key=_by_start)
    return Trace(id=trace_id or (roots[0].id if roots else ""), roots=roots, runs=runs)
