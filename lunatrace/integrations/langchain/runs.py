"""LangChain callbacks -> raw events, on the background worker.

The handler's hooks (:mod:`.handler`) only queue their arguments (``Tracer.queue_record``);
the builders here turn them into raw events when the worker reaches them. Builders run
one at a time and in queue order, so the state of LangChain's open runs lives here, in
:data:`BOOK`, touched by no other thread: the application's thread pays for none of the
mapping, naming, parent resolution or bookkeeping.

A builder never raises: a failure is reported as its hook's (``CallbackHandler._failed``)
and costs that event only. A start that fails leaves no open run, so its end is dropped
too, rather than sent for a run the server never saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from lunatrace.api import get_tracer
from lunatrace.core.context import RunFrame, User
from lunatrace.core.events import CONTEXT_KEY, ESTIMATE_KEY, build, error_payload
from lunatrace.core.serialize import Deferred
from lunatrace.integrations.langchain import mapping
from lunatrace.integrations.langchain.convert import (
    chain_payload,
    documents_to_dicts,
    generations_to_openai,
    prompt_batches_to_openai,
)

if TYPE_CHECKING:
    from lunatrace.integrations.langchain.handler import CallbackHandler

_MISSING: Any = object()
_STREAM_PLACEHOLDER = {"input": ""}
ABANDONED_AFTER_NS = 3_600_000_000_000  # an hour: then an open run is closed as an error
SWEEP_INTERVAL_NS = 60_000_000_000
MAX_CUSTOM_EVENTS = 100

# Root information decided on the application's thread: (parent, user id, user props).
Root = tuple[str | None, Any, Any]


class OpenRun:
    """What the worker keeps about an open LangChain run until its end."""

    __slots__ = ("custom_events", "first_token_ns", "model", "prompt", "rid", "run_type", "started_ns")

    def __init__(self, rid: str, run_type: str, started_ns: int, model: str | None, prompt: Any) -> None:
        self.rid = rid
        self.run_type = run_type
        self.started_ns = started_ns
        self.model = model
        self.prompt = prompt
        self.first_token_ns: int | None = None
        self.custom_events: list[dict[str, Any]] | None = None


class RunBook:
    """LangChain's open runs, keyed by LangChain's own run id objects (worker only)."""

    def __init__(self) -> None:
        self.open: dict[Any, OpenRun] = {}
        self._last_sweep = time.perf_counter_ns()

    def parent_of(self, parent: Any, frame: RunFrame | None) -> str | None:
        """The lunatrace parent of a run whose LangChain parent is ``parent``.

        An open run, else a run the tracer knows (one that ended, for a late child), else
        (a parent never seen: the handler was attached below the root) the lunatrace run
        enclosing the call, or none. A decorated function called inside the LangChain
        parent, in which this run started, is the parent instead.
        """
        state = self.open.get(run_key(parent))
        if state is not None:
            rid: str | None = state.rid
        else:
            rid = str(parent)
            if not get_tracer().is_known(rid):
                rid = frame.run_id if frame is not None else None
        if frame is not None and rid in frame.framework_runs:
            return frame.run_id
        return rid

    def sweep(self, now_ns: int) -> None:
        """End as errors the runs open for more than an hour (they would stay 'started')."""
        if now_ns - self._last_sweep < SWEEP_INTERVAL_NS:
            return
        self._last_sweep = now_ns
        stale = [key for key, state in self.open.items() if now_ns - state.started_ns >= ABANDONED_AFTER_NS]
        tracer = get_tracer()
        for key in stale:
            state = self.open.pop(key)
            message = f"run abandoned: no end after {ABANDONED_AFTER_NS / 1e9:.0f} s"
            tracer.note_run(state.rid, state.run_type)
            tracer.emit_event(
                build("error", state.run_type, state.rid, error={"message": message, "stack": ""})
            )


BOOK = RunBook()


def run_key(run_id: Any) -> Any:
    """The key of a run in :data:`BOOK`: LangChain's ``UUID``; an id given another way (a
    string, from a direct call) is parsed so that it names the same run."""
    if type(run_id) is UUID:
        return run_id
    try:
        return UUID(str(run_id))
    except ValueError:
        return run_id


# --- starts ---------------------------------------------------------------------------------


def build_start(
    ts_ms: int,
    ns: int,
    handler: CallbackHandler,
    hook: str,
    run_id: Any,
    parent: Any,
    root: Root | None,
    frame: RunFrame | None,
    user: User | None,
    context_tags: tuple[str, ...],
    context_metadata: Mapping[str, Any],
    serialized: Any,
    payload: Any,
    tags: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
    run_name: str | None,
    detail: Any,
) -> dict[str, Any] | None:
    """A run start: name, type, parent and fields of the hook ``hook``'s arguments.

    ``detail`` is the one keyword argument of the hook needed here (see ``_DETAIL`` in
    :mod:`.handler`).
    """
    try:
        run_type, name, payload, chain, invocation_params, extra, model = _describe(
            hook, serialized, payload, metadata, run_name, detail
        )
        if root is not None:
            parent_id, user_id, user_props = root
            handler_tags, handler_metadata = handler.tags, handler.metadata
        else:
            parent_id = BOOK.parent_of(parent, frame)
            user_id = user_props = handler_tags = handler_metadata = None
        if user_id is None and user is not None:
            user_id, user_props = user.user_id, user_props or user.props
        rid = str(run_id)
        BOOK.open[run_key(run_id)] = OpenRun(rid, run_type, ns, model, payload if run_type == "llm" else None)
        BOOK.sweep(ns)
        raw: dict[str, Any] = {
            "type": run_type,
            "event": "start",
            "runId": rid,
            "parentRunId": parent_id,
            "name": name,
            "input": _chain_field(payload, "input") if chain else payload,
            "userId": None if user_id is None else str(user_id),
            "userProps": user_props if user_id is not None else None,
        }
        _map_start(raw, tags, metadata, extra, handler_tags, handler_metadata, invocation_params)
        if context_tags or context_metadata:
            raw[CONTEXT_KEY] = (context_tags, context_metadata)
        return raw
    except Exception as exc:  # noqa: BLE001 - a mapping bug must not stop the worker
        handler._failed(hook, exc)
        return None


def _describe(
    hook: str, serialized: Any, payload: Any, metadata: Mapping[str, Any] | None, run_name: Any, detail: Any
) -> tuple[str, str, Any, bool, Any, dict[str, Any] | None, str | None]:
    """Run type, name, input, whether it is a chain's (wrapped), invocation params, extra
    metadata and model of a start, from the hook's arguments."""
    if hook == "on_chain_start":
        name = run_name or mapping.class_name(serialized) or "chain"
        # Streaming chains start with the placeholder ``{"input": ""}`` and send their
        # real inputs with their end; depending on the release ``defers_inputs`` (the
        # detail) is then true, false or absent, so the placeholder itself is the signal.
        # (Only a dict can equal it: comparing a message would run pydantic's ``__eq__``.)
        if detail or (type(payload) is dict and payload == _STREAM_PLACEHOLDER):
            payload = None
        return mapping.chain_type(name, metadata), name, payload, True, _MISSING, None, None
    if hook in ("on_chat_model_start", "on_llm_start"):
        model, _ = mapping.model_name(serialized, metadata, detail)
        if hook == "on_chat_model_start":
            payload = Deferred(prompt_batches_to_openai, payload)
        elif len(payload) == 1:
            payload = [{"role": "user", "content": payload[0]}]
        else:
            payload = [[{"role": "user", "content": p}] for p in payload]
        extra = {"runName": run_name} if run_name else None
        return "llm", model, payload, False, detail, extra, model
    if hook == "on_tool_start":
        extra = {"toolCallId": detail} if detail else None
        name = run_name or mapping.class_name(serialized) or "tool"
        return "tool", name, payload, False, _MISSING, extra, None
    name = run_name or mapping.class_name(serialized) or "retriever"
    return "retriever", name, payload, False, _MISSING, None, None


def _map_start(
    raw: dict[str, Any],
    tags: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None,
    handler_tags: Sequence[str] | None,
    handler_metadata: Mapping[str, Any] | None,
    invocation_params: Any,
) -> None:
    """Set a start's tags, metadata and (llm runs) params.

    LangChain's bookkeeping tags and metadata are dropped, a retry tag becomes
    ``retryAttempt``, and a root gets the handler's own tags and metadata under its own.
    """
    run_tags = mapping.user_tags(tags) if tags else None
    run_metadata = mapping.user_metadata(metadata) if metadata else None
    if extra:
        run_metadata = {**run_metadata, **extra} if run_metadata else dict(extra)
    if run_tags:  # retry tags are user-visible tags: only look when some are left
        attempt = mapping.retry_attempt(run_tags)
        if attempt is not None:
            run_metadata = {**(run_metadata or {}), "retryAttempt": attempt}
    if handler_tags:
        run_tags = list(dict.fromkeys([*handler_tags, *(run_tags or ())]))
    if handler_metadata:
        run_metadata = {**handler_metadata, **(run_metadata or {})}
    if run_tags:
        raw["tags"] = run_tags
    if run_metadata:
        raw["metadata"] = run_metadata
    if invocation_params is not _MISSING:
        raw["params"] = mapping.llm_params(invocation_params, metadata) or None


# --- ends -------------------------------------------------------------------------------------


def _end_raw(state: OpenRun, output: Any, payload: Any = None, metadata: Any = None) -> dict[str, Any]:
    """The end event of ``state``'s run; custom events recorded on it go in its metadata."""
    get_tracer().note_run(state.rid, state.run_type)
    if state.custom_events:
        metadata = {**(metadata or {}), "customEvents": state.custom_events}
    raw: dict[str, Any] = {
        "type": state.run_type,
        "event": "end",
        "runId": state.rid,
        "output": output,
        "input": payload,
        "metadata": metadata or None,
    }
    return raw


def build_end(
    ts_ms: int, ns: int, handler: CallbackHandler, hook: str, run_id: Any, outcome: Any, inputs: Any
) -> dict[str, Any] | None:
    """A run's end or error: the open run is closed here, the hook's mapping makes the event."""
    try:
        state = BOOK.open.pop(run_key(run_id), None)
        if state is None:
            return None
        return _ENDINGS[hook](state, outcome, inputs)
    except Exception as exc:  # noqa: BLE001
        handler._failed(hook, exc)
        return None


def _chain_end(state: OpenRun, outputs: Any, inputs: Any) -> dict[str, Any]:
    """Output and (streaming) inputs without LangChain's wrappers."""
    return _end_raw(state, _chain_field(outputs, "output"), _chain_field(inputs, "input"))


def _llm_end(state: OpenRun, response: Any, inputs: Any) -> dict[str, Any]:
    """The assistant message(s), usage, the model that answered, time to first token.

    Without reported usage, the end carries what a token estimate needs: the model (the
    one that answered, else the start's), the prompt and the output.
    """
    output = Deferred(generations_to_openai, getattr(response, "generations", None) or [])
    metadata: dict[str, Any] = {}
    if state.first_token_ns is not None:
        metadata["timeToFirstTokenMs"] = round((state.first_token_ns - state.started_ns) / 1e6, 2)
    model = mapping.response_model(response)
    if model:
        metadata["responseModel"] = model
    raw = _end_raw(state, output, None, metadata)
    usage = mapping.usage_of(response)
    if usage:
        raw["tokensUsage"] = usage
    else:
        raw[ESTIMATE_KEY] = (model or state.model, state.prompt, output)
    return raw


def _tool_end(state: OpenRun, output: Any, inputs: Any) -> dict[str, Any]:
    """A ``ToolMessage``'s content and call id; an error status ends the run as an error."""
    metadata = None
    if getattr(output, "type", None) == "tool":  # a ToolMessage
        content = getattr(output, "content", None)
        call_id = getattr(output, "tool_call_id", None)
        # Older LangChain releases pass tool_call_id only here, not to on_tool_start.
        metadata = {"toolCallId": call_id} if call_id else None
        if getattr(output, "status", None) == "error":
            message = content if isinstance(content, str) else repr(content)
            return _error_raw(state, {"message": message, "stack": ""}, metadata)
        output = content
    return _end_raw(state, output, None, metadata)


def _retriever_end(state: OpenRun, documents: Any, inputs: Any) -> dict[str, Any]:
    return _end_raw(state, Deferred(documents_to_dicts, documents))


def _error_raw(state: OpenRun, payload: dict[str, str], metadata: Any = None) -> dict[str, Any]:
    get_tracer().note_run(state.rid, state.run_type)
    return {
        "type": state.run_type,
        "event": "error",
        "runId": state.rid,
        "error": payload,
        "metadata": metadata or None,
    }


def _failure(state: OpenRun, error: BaseException, inputs: Any) -> dict[str, Any]:
    """An error with message and stack; LangGraph control flow ends the run normally instead."""
    if mapping.is_control_flow(error):
        metadata = {"interrupted": True, "interruptType": type(error).__name__}
        return _end_raw(state, mapping.interrupt_payload(error), None, metadata)
    return _error_raw(state, error_payload(error))


_ENDINGS: dict[str, Callable[[OpenRun, Any, Any], dict[str, Any]]] = {
    "on_chain_end": _chain_end,
    "on_llm_end": _llm_end,
    "on_tool_end": _tool_end,
    "on_retriever_end": _retriever_end,
    **{f"on_{kind}_error": _failure for kind in ("chain", "llm", "tool", "retriever")},
}


# --- events on open runs ------------------------------------------------------------------


def build_first_token(ts_ms: int, ns: int, handler: CallbackHandler, run_id: Any) -> None:
    """Note when a streaming llm run produced its first token (no event of its own)."""
    state = BOOK.open.get(run_key(run_id))
    if state is not None and state.first_token_ns is None:
        state.first_token_ns = ns


def build_annotation(
    ts_ms: int, ns: int, handler: CallbackHandler, hook: str, run_id: Any, name: str, data: Any
) -> None:
    """Keep a named event (custom event, retry, agent step) for its run's end metadata."""
    state = BOOK.open.get(run_key(run_id))
    if state is None:
        return
    events = state.custom_events
    if events is None:
        events = state.custom_events = []
    if len(events) < MAX_CUSTOM_EVENTS:
        events.append({"name": str(name), "data": data, "timestampMs": ts_ms})


# --- payloads -------------------------------------------------------------------------------


def _unwrapped_input(value: Any) -> Any:
    return chain_payload(mapping.unwrap(value, "input"))


def _unwrapped_output(value: Any) -> Any:
    return chain_payload(mapping.unwrap(value, "output"))


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _chain_field(value: Any, key: str) -> Any:
    """A chain's input or output (``key``), without LangChain's ``{key: ...}`` wrapper,
    converted when encoded.

    Plain values need no conversion: a string, or a dict of strings and numbers (most
    chain inputs), is only unwrapped, here.
    """
    if value is None or type(value) is str:
        return value
    if type(value) is dict and all(type(item) in _SCALARS for item in value.values()):
        return mapping.unwrap(value, key)
    return Deferred(_unwrapped_input if key == "input" else _unwrapped_output, value)
