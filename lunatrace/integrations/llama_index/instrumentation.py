"""LlamaIndex's instrumentation dispatcher -> lunatrace runs (the recommended path).

One span handler and one event handler sit on the root dispatcher. Spans give the tree
(``parent_span_id``) and the objects (``instance``, ``bound_args``, ``result``,
``err``); events give what spans do not carry: LLM messages, model, streamed output and
the real end of a stream.

Only meaningful spans become runs; the others are *folded*: kept in the span table only
so that their children find the nearest shown ancestor. An LLM call is one llm run
however many layers LlamaIndex stacks (``chat`` -> ``complete``, ``astream_chat`` ->
``stream_chat`` -> ``stream_complete``): inner layers become *aliases* of the outermost
one and their events are ignored. ``astream_chat`` starts its inner ``stream_chat`` only
when the stream is read, outside its span, so that layer is recognised by the same LLM
object and the same messages object.

Span ids look like ``Class.method-<uuid4>``; runs get fresh UUIDs. On the caller's
thread a hook does dictionary operations on the span table, walks up to the nearest
shown ancestor, and reads the fields the application may change later (names, params,
usage, query texts, retrieved nodes, the fields of each message). Messages are put in
OpenAI format, tool schemas built and everything turned into JSON on the worker.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import PrivateAttr

from lunatrace.api import get_tracer
from lunatrace.core import context
from lunatrace.core.events import new_run_id
from lunatrace.integrations.llama_index import mapping
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
from lunatrace.integrations.llama_index.chat_streams import (
    WRITER_CLASS,
    WRITER_METHODS,
    ChatStreams,
    is_streaming_chat_response,
    unwritten_stream_field,
)

try:  # the light package (0.3 s to import) when present, else LlamaIndex core
    from llama_index_instrumentation import get_dispatcher
    from llama_index_instrumentation.event_handlers import BaseEventHandler
    from llama_index_instrumentation.span import BaseSpan, active_span_id
    from llama_index_instrumentation.span_handlers import BaseSpanHandler
except ImportError:  # pragma: no cover - older LlamaIndex without the split package
    from llama_index.core.instrumentation import get_dispatcher  # type: ignore[no-redef,attr-defined]
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # type: ignore[no-redef]
    from llama_index.core.instrumentation.span import BaseSpan, active_span_id  # type: ignore[no-redef]
    from llama_index.core.instrumentation.span_handlers import BaseSpanHandler  # type: ignore[no-redef]

LLM, EMBED, RETRIEVER, QUERY, CHAT, SYNTH, TOOL, AGENT, STEP, WRITER = (
    "llm",
    "embed",
    "retriever",
    "query",
    "chat",
    "synth",
    "tool",
    "agent",
    "step",
    "writer",  # a streaming chat response's history writer: no run, ends the chat run
)
RUN_TYPES = {
    LLM: "llm",
    EMBED: "embed",
    RETRIEVER: "retriever",
    QUERY: "chain",
    CHAT: "chain",
    SYNTH: "chain",
    TOOL: "tool",
    AGENT: "agent",
    STEP: "chain",
}
# Base class name -> (kind, methods shown as runs). Other methods of these classes fold.
_SHOWN_METHODS = (
    (
        "BaseLLM",
        LLM,
        {"chat", "achat", "stream_chat", "astream_chat", "complete", "acomplete", "stream_complete"}
        | {"astream_complete"},
    ),
    (
        "BaseEmbedding",
        EMBED,
        {"get_query_embedding", "aget_query_embedding", "get_text_embedding", "aget_text_embedding"}
        | {"get_text_embedding_batch", "aget_text_embedding_batch"}
        | {"get_agg_embedding_from_queries", "aget_agg_embedding_from_queries"},
    ),
    ("BaseRetriever", RETRIEVER, {"retrieve", "aretrieve"}),
    ("BaseQueryEngine", QUERY, {"query", "aquery"}),
    ("BaseChatEngine", CHAT, {"chat", "achat", "stream_chat", "astream_chat"}),
    ("BaseSynthesizer", SYNTH, {"synthesize", "asynthesize"}),
    ("BaseTool", TOOL, {"call", "acall", "__call__"}),
    ("Workflow", AGENT, {"run"}),
    (WRITER_CLASS, WRITER, WRITER_METHODS),
)
STEP_TAG = "llamaindex.step.input_event"
STEP_SUMMARY_TAG = "llamaindex.step.input_summary"
_UUID_SUFFIX = 37  # "-" + str(uuid4())
_kinds: dict[tuple[type, str], str | None] = {}


def _classify(instance: Any, span_id: str, tags: Mapping[str, Any] | None) -> tuple[str | None, str]:
    """(kind, method) of a span; kind ``None`` means folded."""
    qualified = span_id[:-_UUID_SUFFIX]
    method = qualified.rpartition(".")[2]
    if instance is None:
        return (STEP if tags and STEP_TAG in tags else None), method
    key = (type(instance), method)
    try:
        return _kinds[key], method
    except KeyError:
        pass
    names = {cls.__name__ for cls in type(instance).__mro__}
    kind = next((k for base, k, methods in _SHOWN_METHODS if base in names and method in methods), None)
    _kinds[key] = kind
    return kind, method


@dataclass(slots=True, eq=False)
class _Run:
    """A shown run: its id, what its end needs, and for LLMs the streaming state."""

    run_id: str
    kind: str
    span_id: str
    instance: Any
    arguments: Mapping[str, Any]
    parent_run: Any  # a run id, None, or FROM_CONTEXT
    started: bool = False
    ended: bool = False
    streaming: bool = False
    pending_key: tuple[int, int] | None = None
    watch_key: int | None = None
    last_response: Any = None


@dataclass(slots=True, eq=False)
class _Span:
    parent: str | None
    run: _Run | None  # the shown run this span belongs to; None: folded
    own: bool  # False: an inner layer (alias) of ``run``
    writer_of: Any = None  # WRITER spans: the streaming chat response being written


def _first_argument(arguments: Mapping[str, Any]) -> Any:
    for name, value in arguments.items():
        if name == "args":
            return value[0] if value else None
        if name != "kwargs":
            return value
    return None


def _llm_input_from_arguments(arguments: Mapping[str, Any]) -> Any:
    return mapping.llm_input(_first_argument(arguments))


class Recorder:
    """The state shared by the span and event handlers: span table, streams, relays."""

    def __init__(self, stream_timeout: float) -> None:
        self.stream_timeout = stream_timeout
        self.spans: dict[str, _Span] = {}
        self.pending: dict[tuple[int, int], _Run] = {}
        self.watch = StreamWatch()
        self.relays = StreamRelays(self.watch, active_span_id.set, active_span_id.reset, self._stream_done)
        self.chat_streams = ChatStreams(self.watch, self._end_deferred)
        self.active = False

    # --- tree ---------------------------------------------------------------------

    def _shown_ancestor(self, span_id: str | None) -> _Run | None:
        spans = self.spans
        while span_id is not None:
            entry = spans.get(span_id)
            if entry is None:
                return None
            if entry.run is not None:
                return entry.run
            span_id = entry.parent
        return None

    def current_run(self) -> str | None:
        """Framework resolver: our run for LlamaIndex's active span, if it is shown and started."""
        if not self.active:
            return None
        run = self._shown_ancestor(active_span_id.get())
        return run.run_id if run is not None and run.started and not run.ended else None

    # --- spans --------------------------------------------------------------------

    def enter(
        self,
        span_id: str,
        arguments: Mapping[str, Any],
        instance: Any,
        parent_id: str | None,
        tags: Mapping[str, Any] | None,
    ) -> None:
        kind, method = _classify(instance, span_id, tags)
        if kind is None or kind == WRITER:
            self.spans[span_id] = _Span(parent_id, None, True, instance if kind == WRITER else None)
            return
        ancestor = self._shown_ancestor(parent_id)
        alias = self._alias_of(kind, instance, arguments, ancestor)
        if alias is not None:
            self.spans[span_id] = _Span(parent_id, alias, False)
            return
        if kind == STEP and (ancestor is None or ancestor.kind != AGENT):
            self.spans[span_id] = _Span(parent_id, None, True)
            return
        entry = _Span(parent_id, None, True)
        self.spans[span_id] = entry
        # Registered (folded) first: while the parent is chosen, our resolver walks from
        # this active span to its nearest shown ancestor.
        parent = parent_run(ancestor.run_id if ancestor is not None else None)
        run = _Run(new_run_id(), kind, span_id, instance, arguments, parent)
        entry.run = run
        if kind == LLM:
            return  # started by its start event, which carries model and messages
        get_tracer().start_run(
            RUN_TYPES[kind],
            self._name(kind, instance, method),
            safely(f"{kind} input", lambda args: self._input(kind, args, tags), arguments),
            run_id=run.run_id,
            parent_run_id=run.parent_run,
        )
        run.started = True

    def _alias_of(
        self, kind: str, instance: Any, arguments: Mapping[str, Any], ancestor: _Run | None
    ) -> _Run | None:
        if (
            ancestor is not None
            and ancestor.kind == kind
            and (kind in (LLM, EMBED) or (kind == TOOL and ancestor.instance is instance))
        ):
            return ancestor
        if kind == LLM and self.pending:
            return self.pending.get((id(instance), id(_first_argument(arguments))))
        return None

    @staticmethod
    def _name(kind: str, instance: Any, method: str) -> str:
        if kind == TOOL:
            return mapping.tool_name(instance)
        if kind == STEP:
            return method
        if kind == EMBED:
            return mapping.model_name(None, instance)
        if kind == AGENT:
            name = getattr(instance, "name", None)
            return name if isinstance(name, str) and name and name != "Agent" else type(instance).__name__
        return type(instance).__name__

    @staticmethod
    def _input(kind: str, arguments: Mapping[str, Any], tags: Mapping[str, Any] | None) -> Any:
        if kind in (RETRIEVER, QUERY):
            return mapping.query_text(arguments.get("str_or_query_bundle"))
        if kind == SYNTH:
            return mapping.query_text(arguments.get("query"))
        if kind == CHAT:
            return arguments.get("message")
        if kind == TOOL:
            return mapping.tool_input(arguments)
        if kind == AGENT:
            return mapping.agent_input(arguments)
        if kind == STEP:
            return (tags or {}).get(STEP_SUMMARY_TAG)
        return _first_argument(arguments)  # embeddings: the text(s) or query

    def exit(self, span_id: str, result: Any) -> None:
        entry = self.spans.pop(span_id, None)
        if entry is not None and entry.writer_of is not None:
            self.chat_streams.writer_done(entry.writer_of, None)
        if entry is None or entry.run is None or not entry.own:
            return
        run = entry.run
        try:
            self._finish(entry, span_id, run, result)
        except Exception:
            get_tracer().end_run(run.run_id)  # keep the tree valid; ignored if already ended
            raise

    def _finish(self, entry: _Span, span_id: str, run: _Run, result: Any) -> None:
        if run.kind == LLM:
            self._exit_llm(entry, run, result)
            return
        if run.kind == CHAT and is_streaming_chat_response(result):
            field = unwritten_stream_field(result)
            if field is None:
                self.chat_streams.defer(run, result, self.stream_timeout)
                return
            if self._defer_to_stream(entry, span_id, run, result, field):
                return
        tracer = get_tracer()
        if run.kind in (QUERY, SYNTH, CHAT) and self._defer_to_stream(entry, span_id, run, result):
            return
        run.ended = True
        if run.kind == TOOL and getattr(result, "is_error", False):
            tracer.error_run(run.run_id, str(mapping.text_output(result)))
        else:
            output = safely(f"{run.kind} output", lambda r: self._output(run.kind, r), result)
            tracer.end_run(run.run_id, output)

    @staticmethod
    def _output(kind: str, result: Any) -> Any:
        if kind == RETRIEVER:
            return mapping.nodes_output(result)
        if kind == EMBED:
            return mapping.embeddings_output(result)
        if kind == STEP:
            return None if result is None else {"event": type(result).__name__}
        if kind == AGENT:
            return mapping.text_output(getattr(result, "result", result))
        return mapping.text_output(result)

    def drop(self, span_id: str, err: BaseException | None) -> None:
        entry = self.spans.pop(span_id, None)
        if entry is not None and entry.writer_of is not None:
            self.chat_streams.writer_done(entry.writer_of, err or RuntimeError("stream failed"))
        if entry is None or entry.run is None or not entry.own or entry.run.ended:
            return
        run = entry.run
        if not run.started:
            self._start_llm(run, None, None)
        run.ended = True
        report_error(run.run_id, err if err is not None else RuntimeError("span dropped"))

    # --- LLM runs -----------------------------------------------------------------------

    def _exit_llm(self, entry: _Span, run: _Run, result: Any) -> None:
        if run.ended:
            return
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            # The span exits when the stream is created; its events end the run.
            run.streaming = True
            self.spans[run.span_id] = entry
            key = (id(run.instance), id(_first_argument(run.arguments)))
            run.pending_key = key
            self.pending[key] = run
            run.watch_key = self.watch.watch(self.stream_timeout, lambda: self._abandon_llm(run))
            return
        self._end_llm(run, result)

    def _start_llm(self, run: _Run, model_dict: Any, additional_kwargs: Any, llm_input: Any = None) -> None:
        if llm_input is None:
            llm_input = safely("llm input", _llm_input_from_arguments, run.arguments)
        run.started = True
        get_tracer().start_run(
            "llm",
            mapping.model_name(model_dict, run.instance),
            llm_input,
            run_id=run.run_id,
            parent_run_id=run.parent_run,
            params=safely("llm params", lambda kw: mapping.llm_params(run.instance, kw), additional_kwargs),
        )

    def _end_llm(self, run: _Run, response: Any, metadata: Mapping[str, Any] | None = None) -> None:
        if run.ended:
            return
        if not run.started:
            self._start_llm(run, None, None)
        run.ended = True
        self._forget_stream(run)
        get_tracer().end_run(
            run.run_id,
            safely("llm output", mapping.response_output, response),
            usage=safely("llm usage", mapping.response_usage, response),
            metadata=safely("llm response model", lambda r: mapping.response_metadata(r, metadata), response)
            or metadata,
        )

    def _forget_stream(self, run: _Run) -> None:
        if not run.streaming:
            return
        if run.watch_key is not None:
            self.watch.cancel(run.watch_key)
        if run.pending_key is not None and self.pending.get(run.pending_key) is run:
            del self.pending[run.pending_key]
        entry = self.spans.get(run.span_id)
        if entry is not None and entry.run is run:
            del self.spans[run.span_id]

    def _abandon_llm(self, run: _Run) -> None:
        self._end_llm(run, run.last_response, {"streamAbandoned": True})

    def _own_llm(self, span_id: Any) -> _Run | None:
        entry = self.spans.get(span_id) if span_id else None
        if entry is None or not entry.own or entry.run is None or entry.run.kind != LLM:
            return None
        return entry.run

    def llm_start(self, event: Any, llm_input: Any) -> None:
        run = self._own_llm(event.span_id)
        if run is not None and not run.started:
            self._start_llm(run, event.model_dict, event.additional_kwargs, llm_input)

    def llm_progress(self, event: Any) -> None:
        run = self._own_llm(event.span_id)
        if run is not None:
            run.last_response = event.response
            if run.pending_key is not None and self.pending.get(run.pending_key) is run:
                del self.pending[run.pending_key]  # its inner layers have all started by now

    def llm_end(self, event: Any) -> None:
        run = self._own_llm(event.span_id)
        if run is not None:
            self._end_llm(run, event.response if event.response is not None else run.last_response)

    def llm_exception(self, event: Any) -> None:
        run = self._own_llm(event.span_id)
        if run is not None and not run.ended:
            run.ended = True
            self._forget_stream(run)
            report_error(run.run_id, event.exception)

    # --- streamed answers of query and chat engines ---------------------------------------

    def _defer_to_stream(
        self, entry: _Span, span_id: str, run: _Run, result: Any, field: str = "response_gen"
    ) -> bool:
        """Keep a chain run open until its streamed answer is read; ``True`` if deferred.

        The innermost deferred span stays in the table (the relay makes it active while
        the stream is read, so the lazy LLM call finds it as its parent).
        """
        relay = self.relays.defer(result, span_id, run, self.stream_timeout, field)
        if relay is None:
            return False
        if relay.anchor == span_id:
            self.spans[span_id] = entry
        return True

    def _stream_done(self, relay: Relay, text: str | None, exc: BaseException | None) -> None:
        self.spans.pop(relay.anchor, None)
        for run in relay.runs:
            self._end_deferred(run, text, exc, text is None and exc is None)

    @staticmethod
    def _end_deferred(run: _Run, text: str | None, exc: BaseException | None, abandoned: bool) -> None:
        """End a chain run that waited for its streamed answer."""
        run.ended = True
        if exc is not None:
            report_error(run.run_id, exc)
        elif abandoned:
            get_tracer().end_run(run.run_id, text, metadata={"streamAbandoned": True})
        else:
            get_tracer().end_run(run.run_id, text)


class LunatraceSpanHandler(BaseSpanHandler[BaseSpan]):
    """Span handler: overrides the enter/exit/drop entry points directly (no span objects,
    no ``open_spans`` bookkeeping) and never raises."""

    _recorder: Recorder = PrivateAttr()

    @classmethod
    def class_name(cls) -> str:
        return "LunatraceSpanHandler"

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._recorder.enter(id_, bound_args.arguments, instance, parent_id, tags)
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form (here and below)
            log_failure("span start", exc)

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._recorder.exit(id_, result)
        except Exception as exc:  # noqa: BLE001 - the guard
            log_failure("span end", exc)

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._recorder.drop(id_, err)
        except Exception as exc:  # noqa: BLE001 - the guard
            log_failure("span error", exc)

    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class LunatraceEventHandler(BaseEventHandler):
    """Event handler: LLM start/progress/end/exception events, dispatched by class name."""

    _recorder: Recorder = PrivateAttr()

    @classmethod
    def class_name(cls) -> str:
        return "LunatraceEventHandler"

    def handle(self, event: Any, **kwargs: Any) -> None:
        try:
            handler = _EVENT_HANDLERS.get(type(event).__name__)
            if handler is not None:
                handler(self._recorder, event)
        except Exception as exc:  # noqa: BLE001 - the guard
            log_failure(f"event {type(event).__name__}", exc)


_EVENT_HANDLERS = {
    "LLMChatStartEvent": lambda r, e: r.llm_start(e, safely("llm input", mapping.llm_input, e.messages)),
    "LLMCompletionStartEvent": lambda r, e: r.llm_start(e, mapping.prompt_messages(e.prompt)),
    "LLMChatInProgressEvent": Recorder.llm_progress,
    "LLMCompletionInProgressEvent": Recorder.llm_progress,
    "LLMChatEndEvent": Recorder.llm_end,
    "LLMCompletionEndEvent": Recorder.llm_end,
    "ExceptionEvent": Recorder.llm_exception,
}

_lock = threading.Lock()
_handlers: tuple[LunatraceSpanHandler, LunatraceEventHandler] | None = None
_recorder: Recorder | None = None


def is_active() -> bool:
    """Whether :func:`instrument` is in force (the legacy handler then stands down)."""
    return _handlers is not None


def instrument(**options: Any) -> None:
    """Trace every LlamaIndex call in this process; calling it again only updates options.

    Options: ``stream_timeout`` (seconds, default 300): a streamed LLM answer or query
    response not read to the end within this time is closed, flagged ``streamAbandoned``.
    """
    global _handlers, _recorder
    stream_timeout = option_stream_timeout(options)
    with _lock:
        if _recorder is None:
            _recorder = Recorder(stream_timeout)
            context.register_framework_resolver(_recorder.current_run)
        _recorder.stream_timeout = stream_timeout
        if _handlers is not None:
            return
        span_handler = LunatraceSpanHandler()
        span_handler._recorder = _recorder
        event_handler = LunatraceEventHandler()
        event_handler._recorder = _recorder
        dispatcher = get_dispatcher()
        dispatcher.add_span_handler(span_handler)
        dispatcher.add_event_handler(event_handler)
        _recorder.active = True
        _handlers = (span_handler, event_handler)


def uninstrument() -> None:
    """Remove the handlers :func:`instrument` added; runs still open stay open."""
    global _handlers
    with _lock:
        if _handlers is None:
            return
        span_handler, event_handler = _handlers
        dispatcher = get_dispatcher()
        dispatcher.span_handlers = [h for h in dispatcher.span_handlers if h is not span_handler]
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not event_handler]
        if _recorder is not None:
            _recorder.active = False
            _recorder.spans.clear()
            _recorder.pending.clear()
        _handlers = None
