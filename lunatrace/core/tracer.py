"""The facade every integration and the public API call to record runs.

It resolves parents (explicit id, else the context), inherits user, tags and metadata
from the context, decides sampling once per trace, remembers what an ``end`` needs
(the run's type, for llm runs the model and input for a token estimate) keyed by run id,
and stamps each event with the process's monotonic clock *under one lock together with
the hand-off to the sink*: events therefore reach the sink in timestamp order, which
is the order the server processes them in.

No method raises into its caller: failures are logged and counted.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter_ns
from typing import Any

from lunatrace.core import context
from lunatrace.core.config import Config
from lunatrace.core.events import (
    RUN_TYPES,
    THUMBS,
    EndRecord,
    FrameworkHook,
    HookRecord,
    MonotonicClock,
    StampedEvent,
    StartRecord,
    build,
    error_event,
    new_record,
    new_run_id,
    run_id_str,
)
from lunatrace.core.guard import failed, never_raises, swallowed
from lunatrace.core.processes import in_multiprocessing_child
from lunatrace.core.runs import RunRegistry, RunState
from lunatrace.core.serialize import FieldEncoder
from lunatrace.core.transport import Sink

logger = logging.getLogger("lunatrace")


class _FromContext:
    """Sentinel: take the parent from the current context."""

    def __repr__(self) -> str:
        return "FROM_CONTEXT"


FROM_CONTEXT: Any = _FromContext()
ABANDONED_AFTER_S = 3600.0
SWEEP_INTERVAL_NS = 60_000_000_000


OUTPUT_ROLES = frozenset({"assistant", "tool", "bot"})
INPUT_ROLES = frozenset({"user", "system"})
MAX_EXCHANGES = 10_000


class Exchanges:
    """The server's view of each thread's exchanges, so that message ids stay usable.

    The server keeps one ``chat`` run per exchange (user and system messages in, then
    assistant and tool messages out). A message that joins the open exchange *renames*
    that run to the new message's id (its children follow), so the earlier id names
    nothing any more: feedback sent to it is lost, and a run parented to it waits 5 s
    and is stored as a root. This mirrors the server's rule for the messages this process
    sent, and maps each replaced id to the exchange's current one.
    """

    def __init__(self) -> None:
        self._open: OrderedDict[str, tuple[str, bool]] = OrderedDict()  # thread -> (id, answered)
        self._renamed: OrderedDict[str, str] = OrderedDict()  # replaced message id -> its successor

    def add(self, thread_id: str, message_id: str, role: str) -> None:
        """Note a message sent to ``thread_id`` (called in queue order)."""
        last = self._open.get(thread_id)
        answered = role in OUTPUT_ROLES
        joins = last is not None and (answered or (role in INPUT_ROLES and not last[1]))
        if last is not None and joins and last[0] != message_id:
            self._renamed[last[0]] = message_id
            if len(self._renamed) > MAX_EXCHANGES:
                self._renamed.popitem(last=False)
        self._open[thread_id] = (message_id, answered)
        self._open.move_to_end(thread_id)
        if len(self._open) > MAX_EXCHANGES:
            self._open.popitem(last=False)

    def current(self, run_id: str) -> str:
        """``run_id``, or the id the server gave its exchange since."""
        seen = 0
        while (successor := self._renamed.get(run_id)) is not None and seen < MAX_EXCHANGES:
            run_id, seen = successor, seen + 1
        return run_id


class Tracer:
    """Builds run events and hands them to a sink. Thread-safe; never raises.

    ``clock`` and ``now_ns`` (the counter behind it, ``perf_counter_ns``) can be given,
    so that the ordering guarantees are testable with readings a test chooses.
    """

    def __init__(
        self,
        config: Config,
        sink: Sink,
        encoder: FieldEncoder | None = None,
        *,
        clock: MonotonicClock | None = None,
        now_ns: Callable[[], int] = perf_counter_ns,
    ) -> None:
        self.config = config
        self.sink = sink
        self.encoder = encoder or FieldEncoder(
            config.max_field_bytes, config.mask, secrets=(config.project_key or "",)
        )
        self.runs = RunRegistry()
        self._clock = clock or MonotonicClock()
        self._now_ns = now_ns
        self._emit_lock = threading.Lock()
        self._last_sweep = now_ns()
        self._exchanges = Exchanges()
        self._child_flushed = True
        sink.every_tick(self.sweep_abandoned)

    # --- emission -----------------------------------------------------------------

    def _emit(self, raw: dict[str, Any]) -> None:
        """Stamp an event and queue it as a ``StampedEvent`` (see ``events.complete``).

        Every event is stamped under the lock that orders the queue: timestamps are then
        non-decreasing in queue order, even when a counter reading taken before the lock
        (a run's start) is stamped after another thread's later one (the clock clamps it).
        """
        with self._emit_lock:
            self.sink.emit(StampedEvent(self._clock.ms_at(self._now_ns()), raw))

    # --- run lifecycle --------------------------------------------------------------

    def counter_ns(self) -> int:
        """The counter reading behind this tracer's timestamps (``perf_counter_ns()`` unless
        the tracer was given another): what ``start_run(started_ns=...)`` takes."""
        return self._now_ns()

    def is_open(self, run_id: str) -> bool:
        return run_id in self.runs.open

    def run_type(self, run_id: str) -> str | None:
        return self.runs.run_type(run_id)

    def is_sampled(self, run_id: str) -> bool:
        """Whether a known run's trace is sent (runs this tracer never saw count as sent)."""
        return self.runs.is_sampled(run_id)

    def is_known(self, run_id: str | None) -> bool:
        """Whether ``run_id`` was started by this tracer (open, or recently ended)."""
        return self.runs.is_known(run_id)

    def queue_hook(self, hook: FrameworkHook) -> None:
        """Queue a framework callback's record, built on the worker (see ``FrameworkHook``).

        The cheapest way to record an event: a timestamp and a tuple, handed over under
        the emit lock like every event (see ``_emit``), with this tracer's run registry,
        so that a ``configure()`` before the worker reaches it does not redirect it.
        """
        if not self.config.enabled:
            return
        try:
            with self._emit_lock:
                ns = self._now_ns()
                self.sink.emit(new_record(HookRecord, (self._clock.ms_at(ns), ns, self.runs, hook)))
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form
            failed("queueing an event", exc)

    def adopt(self, run_id: Any, run_type: str = "chain") -> str | None:
        """Accept a run started elsewhere (another process, a stored thread message) as a
        parent; return the id the server keeps for it (``None``: not an id, logged).

        Explicit parents from the user are trusted. Any non-empty string is an id, as on the
        server (see :func:`~lunatrace.core.events.run_id_str`); a thread message's id that
        the server has since replaced by a later message of the same exchange is followed.
        """
        try:
            rid = self.server_id(run_id)
        except Exception:  # noqa: BLE001 - a user's object whose str() fails: a bad argument
            logger.warning("lunatrace: parent %r is not a run id; ignored", run_id)
            return None
        if not self.runs.is_known(rid):
            self.runs.remember(rid, run_type)
        return rid

    def server_id(self, run_id: Any) -> str:
        """The id the server holds for a user's run id: its canonical form, followed past the
        merges of thread messages (raises ``ValueError`` for an empty id)."""
        return self._exchanges.current(run_id_str(run_id))

    def resolve_parent(self, parent_run_id: Any) -> str | None:
        """The parent to send: an explicit known id, else the current context's run.

        A parent id never seen (a handler attached below the framework's root) falls back
        to the enclosing lunatrace run, or makes the run a root.
        """
        if parent_run_id is FROM_CONTEXT or parent_run_id is None:
            return self.runs.parent(None, context.current_run_id())
        return self.runs.parent(str(parent_run_id), context.current_lunatrace_run_id())

    def start_run(
        self,
        run_type: str,
        name: str | None = None,
        input: Any = None,  # noqa: A002 - the wire field's name
        *,
        run_id: Any = None,
        parent_run_id: Any = FROM_CONTEXT,
        params: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_id: Any = None,
        user_props: Mapping[str, Any] | None = None,
        template_version_id: int | None = None,
        started_ns: int | None = None,
    ) -> str:
        """Record the start of a run and return its id (``run_id`` if given).

        It does on the calling thread only what later runs depend on at once: the parent,
        the trace's sampling and the run's state. The event itself is queued as a
        ``StartRecord`` with a snapshot of the context's user, tags and metadata, and built
        on the worker.

        ``started_ns`` (a :meth:`counter_ns` reading taken earlier) starts the run when
        that reading was taken rather than now: a provider call's run is named by the
        model the provider answered with, so it is recorded once the answer is in, but it
        began with the request. The stamp is clamped like any other (never before an
        event already queued), so queue order stays timestamp order.
        """
        rid = new_run_id() if run_id is None else run_id if type(run_id) is str else str(run_id)
        if run_type not in RUN_TYPES:
            if self.config.enabled:
                failed(f"start of {run_type} run", ValueError(f"unknown run type {run_type!r}"))
            return rid
        if not self.config.enabled:
            return rid
        try:  # one frame, not helpers: this runs for every run started
            runs = self.runs
            ignore = self.config.ignore
            if ignore is not None and (rule := ignore.match(run_type, name)) is not None:
                self._ignore_run(rid, run_type, rule.drops, parent_run_id)
                return rid
            # The common case first: the parent is an open run, named by its string id.
            parent_state = runs.open.get(parent_run_id) if type(parent_run_id) is str else None
            if parent_state is not None:
                parent: str | None = parent_run_id
                root, sampled = parent_state.root_id, parent_state.sampled
            else:
                parent = self.resolve_parent(parent_run_id)
                trace = runs.trace_of(parent)
                if trace is not None:
                    root, sampled = trace
                else:
                    root = rid
                    rate = self.config.sample_rate
                    sampled = rate >= 1.0 or random.random() < rate
            now = self._now_ns() if started_ns is None else started_ns
            # Only an llm run keeps its model and prompt (for a token estimate at the end).
            if run_type == "llm":
                runs.add(rid, RunState(run_type, root, sampled, now, name, input))
            else:
                runs.add(rid, RunState(run_type, root, sampled, now, None, None))
            if sampled:
                with self._emit_lock:  # stamp and hand over together: see ``_emit``
                    self.sink.emit(
                        StartRecord(
                            self._clock.ms_at(now),
                            run_type,
                            rid,
                            parent,
                            name,
                            input,
                            user_id,
                            user_props,
                            params,
                            tags,
                            metadata,
                            template_version_id,
                            context.current_user(),
                            context.current_tags(),
                            context.current_metadata(),
                        )
                    )
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form
            failed(f"start of {run_type} run", exc)
        return rid

    def _ignore_run(self, rid: str, run_type: str, drop: bool, parent_run_id: Any) -> None:
        """Leave out a run an ignore rule matched: nothing is sent for it.

        Its children attach to the kept run it stands for (its parent, resolved as for any
        run: ignored ancestors stand for theirs), or, with ``drop``, it stays open as an
        unsampled run, so that its children and everything under them are left out too.
        """
        runs = self.runs
        parent = self.resolve_parent(parent_run_id)
        if drop:
            trace = runs.trace_of(parent)
            runs.add(rid, RunState(run_type, trace[0] if trace else rid, False, self._now_ns(), None, None))
        runs.ignore(rid, parent, drop)

    def end_run(
        self,
        run_id: Any,
        output: Any = None,
        *,
        usage: Mapping[str, int] | None = None,
        metadata: Mapping[str, Any] | None = None,
        input: Any = None,  # noqa: A002 - inputs known only at the end (streaming)
        model: str | None = None,
    ) -> bool:
        """Record a run's successful end. ``False`` if the run was not open.

        The event is queued as an ``EndRecord`` and built on the worker.
        """
        try:
            rid = run_id if type(run_id) is str else str(run_id)
            state = self.runs.close(rid)
            if state is None:
                if rid in self.runs.ignored:
                    return True  # left out by an ignore rule: nothing to send
                logger.debug("lunatrace: end for unknown or finished run %s ignored", rid)
                return False
            if not state.sampled:
                return True
            with self._emit_lock:  # stamp and hand over together: see ``_emit``
                self.sink.emit(
                    EndRecord(
                        self._clock.ms_at(self._now_ns()),
                        state.run_type,
                        rid,
                        output,
                        input,
                        usage,
                        metadata,
                        model or state.model,
                        state.prompt,
                    )
                )
            self._ended(rid, state)
            return True
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form
            failed("end of run", exc)
            return False

    @never_raises("error of run", default=False)
    def error_run(
        self,
        run_id: Any,
        error: BaseException | str,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record a run's failure, with the stack taken from the exception itself."""
        rid = str(run_id)
        state = self.runs.close(rid)
        if state is None:
            return rid in self.runs.ignored  # left out by an ignore rule: nothing to send
        if state.sampled:
            self._emit(error_event(state.run_type, rid, error, metadata))
            self._ended(rid, state)
        return True

    def _ended(self, rid: str, state: RunState) -> None:
        if state.root_id == rid or state.root_id not in self.runs.open:
            self.root_ended()

    @never_raises("feedback", default=False)
    def feedback(
        self,
        run_id: Any,
        *,
        thumb: str | None = None,
        comment: str | None = None,
        rating: float | None = None,
        emoji: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> bool:
        """Attach user feedback to a run, in this process or any other."""
        if not self.config.enabled:
            return False
        if thumb is not None and thumb not in THUMBS:
            raise ValueError("thumb must be 'up' or 'down'")
        body = {**(extra or {})}
        for key, value in (("thumb", thumb), ("comment", comment), ("rating", rating), ("emoji", emoji)):
            if value is not None:
                body[key] = value
        if not body:
            raise ValueError("feedback needs at least one of thumb, comment, rating, emoji")
        rid = self.server_id(run_id)
        self._emit(build("feedback", self.run_type(rid) or "chain", rid, feedback=body))
        if context.current_run_id() is None:
            self.root_ended()
        return True

    def track_message(
        self,
        thread_id: str,
        role: str,
        content: Any,
        *,
        message_id: Any = None,
        thread_tags: Sequence[str] | None = None,
        user_id: Any = None,
        user_props: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
    ) -> str:
        """Record one thread message; its id can parent the work the message triggers.

        Returns ``message_id`` as given (a new UUID when none is). The server merges the
        messages of one exchange into a single run whose id becomes the latest message's
        (see :class:`Exchanges`); ``feedback`` and ``parent`` follow that here. Each
        message is stamped at least a millisecond after the event before it: the server
        finds a thread's open exchange as its latest-created run, and two exchanges opened
        in the same millisecond would make that choice arbitrary. Messages are never
        sampled out: a conversation is recorded whole, whatever ``sample_rate`` says of
        the traces its messages parent.
        """
        mid = str(message_id) if message_id is not None else new_run_id()
        if not self.config.enabled:
            return mid
        with swallowed("thread message"):
            wire_mid, wire_thread = run_id_str(mid), run_id_str(thread_id)
            message: dict[str, Any] = {"role": str(role), "content": content}
            if metadata:
                message["metadata"] = dict(metadata)
            if tags:
                message["tags"] = list(tags)
            user = context.current_user()
            if user_id is None and user is not None:
                user_id, user_props = user.user_id, user_props or user.props
            self.runs.remember(wire_mid, "chat")
            event = build(
                "chat",
                "thread",
                wire_mid,
                parent_run_id=wire_thread,
                message=message,
                thread_tags=list(thread_tags) if thread_tags else None,
                user_id=None if user_id is None else str(user_id),
                user_props=user_props if user_id is not None else None,
            )
            with self._emit_lock:  # the exchange's order is the queue's order
                self._exchanges.add(wire_thread, wire_mid, str(role))
                self.sink.emit(StampedEvent(self._clock.ms_after_last(self._now_ns()), event))
            if context.current_run_id() is None:
                self.root_ended()
        return mid

    # --- housekeeping ---------------------------------------------------------------

    def take_open_runs(self, previous: Tracer) -> None:
        """Continue ``previous``'s runs: its registry becomes this tracer's, so that runs open
        across a ``configure()`` end here rather than stay 'started' forever, even when a
        record ``previous`` queued is built after the switch (it opens its run in the
        same registry)."""
        self.runs = previous.runs
        self._exchanges = previous._exchanges

    def root_ended(self) -> None:
        """The outermost run of some work ended (or an event outside any run was sent).

        In a process started by ``multiprocessing`` it is delivered now: such a process
        ends without ``atexit`` (a pool worker is terminated), so this is the last moment
        known to come before its result is handed back (see :mod:`~lunatrace.core.processes`).
        """
        if in_multiprocessing_child():
            # After a flush that timed out (the server is slow or down), wait only briefly:
            # each task would otherwise pay the whole timeout.
            self._child_flushed = self.flush(self.config.exit_timeout if self._child_flushed else 0.05)

    @property
    def open_runs(self) -> int:
        return len(self.runs)

    @never_raises("sweep of abandoned runs", default=None)
    def sweep_abandoned(self) -> None:
        """Close the runs open for more than :data:`ABANDONED_AFTER_S`, at most once every
        :data:`SWEEP_INTERVAL_NS`. Runs on the sink's thread (``Sink.every_tick``)."""
        now = self._now_ns()
        if now - self._last_sweep >= SWEEP_INTERVAL_NS:
            self._last_sweep = now
            self.close_abandoned(ABANDONED_AFTER_S)

    def close_abandoned(self, max_age_s: float) -> int:
        """End as errors the runs open longer than ``max_age_s`` (they would stay 'started').

        Runs whose end the queue dropped are closed first, with no event: their end was
        counted as dropped (``stats()``), and they did not fail."""
        for rid, state in self.runs.close_dropped():
            self._ended(rid, state)
        stale = self.runs.stale(self._now_ns() - max_age_s * 1e9)
        for rid in stale:
            self.error_run(rid, f"run abandoned: no end after {max_age_s:.0f} s")
        return len(stale)

    @never_raises("flush", default=False)
    def flush(self, timeout: float | None = None) -> bool:
        return self.sink.flush(timeout)

    @never_raises("shutdown", default=False)
    def shutdown(self, timeout: float | None = None) -> bool:
        return self.sink.shutdown(timeout)
