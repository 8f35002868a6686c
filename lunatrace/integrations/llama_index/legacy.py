"""LlamaIndex's legacy callback system -> lunatrace runs.

For applications that register observability the way most tutorials show::

    Settings.callback_manager = CallbackManager([CallbackHandler()])

The legacy system differs from the instrumentation one in ways this handler absorbs:

* An exception raised by a handler reaches the user's query, so every hook catches
  everything; a payload our mapping cannot read still ends its run (without output).
* LLM, EMBEDDING and CHUNKING are "leaf" events, never parents: ``chat`` calling
  ``complete`` arrives as two sibling LLM events. An LLM event that starts while another
  LLM event of the same model is open in the same context is folded into it.
* A streamed LLM call ends after ``end_trace``: nothing is evicted at trace end, and
  streams never finished are closed after ``stream_timeout``.
* A failure is an ``EXCEPTION`` event (started, never ended) or an end payload holding
  ``exception``; enclosing events then end with an empty payload. The run that failed
  gets the stack, enclosing runs that end without a result get the message.
* Events other than query, retrieve, synthesize, llm, embedding, function call, agent step
  and sub-question (chunking, node parsing, templating...) are folded.

While :func:`~lunatrace.integrations.llama_index.instrument` is active this handler
stands down, so a process with both registrations reports each run once.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from llama_index.core.callbacks.base import global_stack_trace
from llama_index.core.callbacks.base_handler import BaseCallbackHandler

from lunatrace.api import get_tracer
from lunatrace.core import context
from lunatrace.integrations.llama_index import instrumentation, mapping
from lunatrace.integrations.llama_index._common import (
    Relay,
    StreamRelays,
    StreamWatch,
    log_failure,
    option_stream_timeout,
    parent_run,
    report_error,
    safely,
)

# event type -> (run type, run name; None: taken from the payload)
_SHOWN = {
    "query": ("chain", "query"),
    "retrieve": ("retriever", "retrieve"),
    "synthesize": ("chain", "synthesize"),
    "sub_question": ("chain", "sub_question"),
    "llm": ("llm", None),
    "embedding": ("embed", None),
    "function_call": ("tool", None),
    "agent_step": ("agent", "agent_step"),
}
_open_llm: ContextVar[str | None] = ContextVar("lunatrace_llama_index_open_llm", default=None)
# The event whose streamed answer is being read: the parent of the LLM event it triggers.
_reading: ContextVar[str | None] = ContextVar("lunatrace_llama_index_reading", default=None)
_ROOT = "root"


@dataclass(slots=True, eq=False)
class _Run:
    run_id: str
    event_type: str
    model: str | None = None
    ended: bool = False
    failure: BaseException | None = None  # a failure below this run, seen before its end
    watch_key: int | None = None


@dataclass(slots=True, eq=False)
class _Event:
    parent: str | None
    run: _Run | None  # None: folded
    own: bool = True  # False: a nested LLM event folded into ``run``


class CallbackHandler(BaseCallbackHandler):
    """Legacy LlamaIndex callback handler; never raises into the application.

    Options: ``stream_timeout`` (seconds, default 300) closes LLM events whose end never
    comes (a stream nobody reads to the end), flagged ``streamAbandoned``.
    """

    def __init__(self, **options: Any) -> None:
        self._stream_timeout = option_stream_timeout(options)
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self._events: dict[str, _Event] = {}
        self._watch = StreamWatch()
        self._relays = StreamRelays(self._watch, _reading.set, _reading.reset, self._stream_done)
        _handlers.add(self)
        context.register_framework_resolver(_current_run)

    # --- tree ---------------------------------------------------------------------------

    def _shown(self, event_id: str | None) -> _Run | None:
        events = self._events
        while event_id:
            entry = events.get(event_id)
            if entry is None:
                return None
            if entry.run is not None:
                return entry.run
            event_id = entry.parent
        return None

    def current_run(self, event_id: str | None) -> str | None:
        run = self._shown(event_id)
        return run.run_id if run is not None and not run.ended else None

    # --- hooks ----------------------------------------------------------------------------

    def on_event_start(
        self,
        event_type: Any,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        try:
            if not instrumentation.is_active():
                self._start(str(getattr(event_type, "value", event_type)), payload or {}, event_id, parent_id)
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form
            log_failure("callback start", exc)
        return event_id

    def on_event_end(
        self,
        event_type: Any,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        try:
            self._end(event_id, payload or {})
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form
            log_failure("callback end", exc)

    def start_trace(self, trace_id: str | None = None) -> None:
        """Traces carry no data of their own: the tree comes from event parents."""

    def end_trace(self, trace_id: str | None = None, trace_map: dict[str, list[str]] | None = None) -> None:
        """Nothing is closed here: a streamed LLM event ends after its trace does."""

    # --- mapping ------------------------------------------------------------------------

    def _start(self, event_type: str, payload: Mapping[str, Any], event_id: str, parent_id: str) -> None:
        if event_type == "exception":
            enclosing = self._shown(parent_id)
            if enclosing is not None and isinstance(payload.get("exception"), BaseException):
                enclosing.failure = payload["exception"]
            return
        if not parent_id or parent_id == _ROOT:
            parent_id = _reading.get() or parent_id
        shown = _SHOWN.get(event_type)
        if shown is None:
            self._events[event_id] = _Event(parent_id, None)
            return
        run_type, name = shown
        params = None
        model = None
        llm_input: Any = None
        if event_type == "llm":
            model = mapping.model_name(payload.get("serialized"))
            outer = self._open_llm_run(model)
            if outer is not None:
                self._events[event_id] = _Event(parent_id, outer, own=False)
                return
            name = model
            llm_input = safely("llm input", _llm_input, payload)
            params = safely("llm params", _llm_params, payload)
        elif event_type == "embedding":
            name = mapping.model_name(payload.get("serialized"))
        elif event_type == "function_call":
            tool = payload.get("tool")
            name = str(getattr(tool, "name", None) or "function_call")
        parent = self._shown(parent_id)
        run_id = get_tracer().start_run(
            run_type,
            name,
            llm_input if event_type == "llm" else safely(f"{event_type} input", _INPUTS[event_type], payload),
            parent_run_id=parent_run(parent.run_id if parent is not None else None),
            params=params,
        )
        run = _Run(run_id, event_type, model)
        self._events[event_id] = _Event(parent_id, run)
        if event_type == "llm":
            _open_llm.set(event_id)
            run.watch_key = self._watch.watch(self._stream_timeout, lambda: self._abandon(event_id))

    def _open_llm_run(self, model: str) -> _Run | None:
        """The LLM run this LLM event is a nested layer of, if any (see module docstring)."""
        open_id = _open_llm.get()
        entry = self._events.get(open_id) if open_id else None
        if entry is None or entry.run is None or entry.run.ended or entry.run.model != model:
            return None
        return entry.run

    def _end(self, event_id: str, payload: Mapping[str, Any]) -> None:
        entry = self._events.pop(event_id, None)
        if entry is None or not entry.own:
            return
        run = entry.run
        if run is None:  # folded; a failure inside it still concerns the enclosing run
            failed = payload.get("exception")
            enclosing = self._shown(entry.parent)
            if isinstance(failed, BaseException) and enclosing is not None:
                enclosing.failure = failed
            return
        if run.ended:
            return
        try:
            self._finish(entry, run, event_id, payload)
        except Exception:
            get_tracer().end_run(run.run_id)  # keep the tree valid; ignored if already ended
            raise

    def _finish(self, entry: _Event, run: _Run, event_id: str, payload: Mapping[str, Any]) -> None:
        run.ended = True
        if run.watch_key is not None:
            self._watch.cancel(run.watch_key)
        if _open_llm.get() == event_id:
            _open_llm.set(None)
        failure = payload.get("exception")
        if not isinstance(failure, BaseException) and not payload:
            failure = run.failure
        if isinstance(failure, BaseException):
            report_error(run.run_id, failure)
            parent = self._shown(entry.parent)
            if parent is not None:
                parent.failure = failure
            return
        tracer = get_tracer()
        if run.event_type == "llm":
            response = payload.get("response")
            if response is None:
                response = payload.get("completion")
            tracer.end_run(
                run.run_id,
                safely("llm output", mapping.response_output, response),
                usage=safely("llm usage", mapping.response_usage, response),
                metadata=safely("llm response model", mapping.response_metadata, response),
            )
        elif run.event_type == "embedding":
            tracer.end_run(
                run.run_id,
                safely("embedding output", mapping.embeddings_output, payload.get("embeddings")),
                input=payload.get("chunks"),
            )
        else:
            response = payload.get("response")
            relay = self._relays.defer(response, event_id, run, self._stream_timeout) if response else None
            if relay is not None:
                run.ended = False
                if relay.anchor == event_id:
                    self._events[event_id] = entry
                return
            tracer.end_run(run.run_id, safely(f"{run.event_type} output", _OUTPUTS[run.event_type], payload))

    def _stream_done(self, relay: Relay, text: str | None, exc: BaseException | None) -> None:
        self._events.pop(relay.anchor, None)
        tracer = get_tracer()
        for run in relay.runs:
            run.ended = True
            if exc is not None:
                report_error(run.run_id, exc)
            elif text is None:
                tracer.end_run(run.run_id, None, metadata={"streamAbandoned": True})
            else:
                tracer.end_run(run.run_id, text)

    def _abandon(self, event_id: str) -> None:
        entry = self._events.pop(event_id, None)
        if entry is not None and entry.run is not None and not entry.run.ended:
            entry.run.ended = True
            get_tracer().end_run(entry.run.run_id, None, metadata={"streamAbandoned": True})


def _llm_input(payload: Mapping[str, Any]) -> Any:
    if payload.get("messages") is not None:
        return mapping.llm_input(payload["messages"])
    return mapping.prompt_messages(payload.get("formatted_prompt"))


def _llm_params(payload: Mapping[str, Any]) -> Any:
    return mapping.llm_params(None, payload.get("additional_kwargs"))


def _query(payload: Mapping[str, Any]) -> Any:
    return mapping.query_text(payload.get("query_str"))


def _agent_step_input(payload: Mapping[str, Any]) -> Any:
    return {str(k): v for k, v in payload.items() if str(k) != "serialized"} or None


_INPUTS = {
    "query": _query,
    "retrieve": _query,
    "synthesize": _query,
    "sub_question": lambda p: p.get("sub_question"),
    "embedding": lambda p: None,
    "function_call": lambda p: p.get("function_call"),
    "agent_step": _agent_step_input,
}
_OUTPUTS = {
    "query": lambda p: mapping.text_output(p.get("response")),
    "retrieve": lambda p: mapping.nodes_output(p.get("nodes")),
    "synthesize": lambda p: mapping.text_output(p.get("response")),
    "sub_question": lambda p: p.get("sub_question"),
    "function_call": lambda p: mapping.text_output(p.get("function_call_response")),
    "agent_step": lambda p: mapping.text_output(p.get("response")),
}

_handlers: weakref.WeakSet[CallbackHandler] = weakref.WeakSet()


def _current_run() -> str | None:
    """Framework resolver: the run of the innermost open legacy event in this context."""
    if not _handlers:
        return None
    stack = global_stack_trace.get()
    event_id = stack[-1] if stack else None
    if not event_id or event_id == "root":
        return None
    for handler in list(_handlers):
        run_id = handler.current_run(event_id)
        if run_id is not None:
            return run_id
    return None
