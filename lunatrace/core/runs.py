"""The registry of runs: which are open, which ended recently, and what an end needs.

One registry per tracer, used by every integration: the tracer's own ``start_run``/
``end_run`` on the application's thread, and the LangChain builders on the worker
(whose hooks are mapped there, in queue order). It answers the questions every run
start asks — is this parent a run we traced, which trace is it in, is that trace
sampled — and finds the runs that never ended, for the tracer's sweep.

No lock: each step is one atomic operation on a dict under the GIL. A run is remembered
as ended *before* it stops being open, so a concurrent :meth:`is_known` never misses it,
and ``dict.pop`` decides which thread closes a run.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

RECENT_RUNS = 50_000
PAUSED_RUNS = 10_000


class RunState(NamedTuple):
    """What is kept about an open run until it ends.

    A tuple, not an object with a ``__dict__``: one is made for every run, on the
    application's thread. ``root_id`` names the run's trace, so that a late child
    follows its sampling and a multiprocessing child knows when its work is done.
    ``model`` and ``prompt`` are kept for llm runs only, for a token estimate at the end.
    """

    run_type: str
    root_id: str
    sampled: bool
    started_ns: int  # the clock's reading (``perf_counter_ns``) at the start
    model: str | None
    prompt: Any


class Known(NamedTuple):
    """A run that ended, or one started elsewhere and named as a parent (adopted).

    ``sampled`` is ``None`` for an adopted run: whether its trace is sent was decided
    somewhere else, so it is neither inherited nor contradicted here.
    """

    run_type: str
    sampled: bool | None


class Ignored(NamedTuple):
    """A run left out by an ignore rule: the kept run its children attach to (``None``:
    they are roots), or, with ``drop``, none (the run stays open as an unsampled run, so
    its children are left out with it)."""

    parent: str | None
    drop: bool


class Marks:
    """What a streaming or annotated run collects while it is open (worker side)."""

    __slots__ = ("agent", "annotations", "conversation", "first_token_ns", "paused")

    def __init__(self) -> None:
        self.first_token_ns: int | None = None
        self.annotations: list[dict[str, Any]] = []
        self.agent: str | None = None  # the agent name the run was given (not inherited)
        self.paused: Any = None  # what work under it asked when it paused for a human
        self.conversation: str | None = None  # what resumes it, if it pauses (a thread id)


class RunRegistry:
    """Open runs by id, and a bounded memory of the ones that ended (or were adopted)."""

    def __init__(self) -> None:
        self.open: dict[str, RunState] = {}
        self._recent: OrderedDict[str, Known] = OrderedDict()
        self._marks: dict[str, Marks] = {}
        # Runs left out by an ignore rule, bounded like ``_recent``; empty unless rules are set.
        self.ignored: OrderedDict[str, Ignored] = OrderedDict()
        self._paused: OrderedDict[str, str] = OrderedDict()  # conversation -> run that paused
        # Runs whose end a full queue dropped (their start may still be queued), bounded.
        self._ends_dropped: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.open)

    # --- questions ------------------------------------------------------------------

    def is_known(self, run_id: str | None) -> bool:
        """Whether ``run_id`` is open, ended recently, or was adopted."""
        return bool(run_id) and (run_id in self.open or run_id in self._recent)

    def run_type(self, run_id: str) -> str | None:
        state = self.open.get(run_id)
        if state is not None:
            return state.run_type
        known = self._recent.get(run_id)
        return known.run_type if known is not None else None

    def is_sampled(self, run_id: str) -> bool:
        """Whether a run's trace is sent (a run never seen counts as sent)."""
        state = self.open.get(run_id)
        if state is not None:
            return state.sampled
        known = self._recent.get(run_id)
        return known is None or known.sampled is not False

    def trace_of(self, parent: str | None) -> tuple[str, bool] | None:
        """The trace a child of ``parent`` joins: its root and sampling, when known here.

        A late child (a task outliving its caller) follows its ended parent's decision:
        sent, it would otherwise point at a parent the server never saw, or dropped,
        leave a sent trace incomplete. An adopted parent decides nothing (``None``).
        """
        if parent is None:
            return None
        state = self.open.get(parent)
        if state is not None:
            return state.root_id, state.sampled
        known = self._recent.get(parent)
        if known is None or known.sampled is None:
            return None
        return parent, known.sampled

    def parent(self, named: str | None, enclosing: str | None) -> str | None:
        """The parent to send for a run whose framework names ``named`` as its parent.

        A parent never seen (a handler attached below the framework's root) falls back to
        ``enclosing`` (the lunatrace run around the call) when that is known, else the run
        is a root. An ignored run stands for the kept run its children attach to.
        """
        if self.ignored:
            named, enclosing = self.stand_in(named), self.stand_in(enclosing)
        if named is not None and self.is_known(named):
            return named
        return enclosing if self.is_known(enclosing) else None

    def stand_in(self, run_id: str | None) -> str | None:
        """``run_id``, or for a run ignored with its children kept, the run they attach to."""
        entry = self.ignored.get(run_id) if run_id is not None else None
        return run_id if entry is None or entry.drop else entry.parent

    def stale(self, started_before_ns: float) -> list[str]:
        """The open runs started before ``started_before_ns``: abandoned, never ended."""
        return [rid for rid, state in list(self.open.items()) if state.started_ns <= started_before_ns]

    # --- changes ----------------------------------------------------------------------

    def add(self, run_id: str, state: RunState) -> None:
        self.open[run_id] = state

    def close(self, run_id: str) -> RunState | None:
        """End an open run: its state, or ``None`` if it was not open (or another thread
        closed it first). Its marks are dropped: :meth:`take_marks` them before."""
        state = self.open.get(run_id)
        if state is None:
            return None
        self.remember(run_id, state.run_type, state.sampled)
        if self._marks:
            self._marks.pop(run_id, None)
        return state if self.open.pop(run_id, None) is not None else None

    def remember(self, run_id: str, run_type: str, sampled: bool | None = None) -> None:
        """Know ``run_id`` as a parent (bounded: the oldest are forgotten); ``sampled``
        ``None`` adopts a run whose sampling was decided elsewhere."""
        _bounded(self._recent, run_id, Known(run_type, sampled))

    def end_dropped(self, run_id: str) -> None:
        """Note that ``run_id``'s end was dropped before it was built (any thread)."""
        _bounded(self._ends_dropped, run_id, None)

    def close_dropped(self) -> list[tuple[str, RunState]]:
        """Close the open runs whose end was dropped, and return them: they will get no end,
        and are not abandoned (their end was counted as dropped). A run whose start is
        still queued stays noted until it opens."""
        closed = []
        for rid in list(self._ends_dropped):
            if rid in self.open:
                self._ends_dropped.pop(rid, None)
                self.take_marks(rid)
                state = self.close(rid)
                if state is not None:
                    closed.append((rid, state))
        return closed

    def ignore(self, run_id: str, parent: str | None, drop: bool) -> None:
        """Remember ``run_id`` as ignored (bounded: the oldest are forgotten)."""
        _bounded(self.ignored, run_id, Ignored(parent, drop))

    def marks(self, run_id: str, *, make: bool = True) -> Marks | None:
        """The marks of an open run, made on first use unless ``make`` is false (``None``:
        the run is not open, or has none)."""
        if run_id not in self.open:
            return None
        marks = self._marks.get(run_id)
        if marks is None and make:
            marks = self._marks[run_id] = Marks()
        return marks

    def take_marks(self, run_id: str) -> Marks | None:
        return self._marks.pop(run_id, None) if self._marks else None

    def pause(self, conversation: str, run_id: str) -> None:
        """Note that ``run_id`` paused for a human in ``conversation`` (bounded)."""
        self._paused[conversation] = run_id
        self._paused.move_to_end(conversation)
        while len(self._paused) > PAUSED_RUNS:
            self._paused.popitem(last=False)

    def resume(self, conversation: str) -> str | None:
        """The run that paused in ``conversation``, now resumed (``None``: none is known)."""
        return self._paused.pop(conversation, None)


def _bounded(store: OrderedDict[str, Any], key: str, value: Any) -> None:
    store[key] = value
    while len(store) > RECENT_RUNS:
        store.popitem(last=False)
