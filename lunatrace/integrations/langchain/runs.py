"""LangChain callbacks as named records, mapped to events on the background worker.

The handler's hooks (:mod:`.handler`) only queue their arguments, as one of the records
below (``Tracer.queue_hook``); the worker calls the record's ``build`` when it reaches
it, in queue order. ``build`` translates: it names and types the run, picks its parent
and payloads, and returns the event from :mod:`lunatrace.core.events`' factories. The
state of open runs (their parents, trace, start time, first token and annotations) is
the core's :class:`~lunatrace.core.runs.RunRegistry` of the tracer that queued the
record. A build emits nothing itself, and a failure costs its event only (the core's
guard, in ``HookRecord.build``). A start that fails leaves no open run, so its end is
dropped too, rather than sent for a run the server never saw.

=====================  ===================================================
hook                   record -> core
=====================  ===================================================
``on_*_start``         :class:`LangChainStart` -> ``start_event``, run opened
``on_*_end/_error``    :class:`LangChainEnd` -> ``end_event``/``error_event``, run closed
``on_llm_new_token``   :class:`LangChainFirstToken` -> the run's first-token time
custom, agent, retry   :class:`LangChainAnnotation` -> the run's annotations
=====================  ===================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple
from uuid import UUID

from lunatrace.core.context import RunFrame, User
from lunatrace.core.events import end_event, error_event, start_event
from lunatrace.core.runs import Marks, RunRegistry, RunState
from lunatrace.core.serialize import Deferred
from lunatrace.integrations.langchain import mapping
from lunatrace.integrations.langchain.convert import (
    chain_payload,
    documents_to_dicts,
    generations_to_openai,
    is_resume,
    prompt_batches_to_openai,
)

_STREAM_PLACEHOLDER = {"input": ""}
MAX_ANNOTATIONS = 100


# The last run ids formatted, by identity: LangChain passes a run's one ``UUID`` object to
# its start, its end and as every child's parent, and formatting one takes Python code.
# Bounded (the entries keep their ids alive); emptied when full.
_KEYS: dict[int, tuple[UUID, str]] = {}
MAX_KEYS = 4_096


def run_key(run_id: Any) -> str:
    """The id a LangChain run is registered and sent under: its ``UUID`` as a string; an
    id given another way (a string, from a direct call) is parsed so that it names the
    same run."""
    if type(run_id) is UUID:
        entry = _KEYS.get(id(run_id))
        if entry is not None and entry[0] is run_id:
            return entry[1]
        key = str(run_id)
        if len(_KEYS) >= MAX_KEYS:
            _KEYS.clear()
        _KEYS[id(run_id)] = (run_id, key)
        return key
    try:
        return str(UUID(str(run_id)))
    except ValueError:
        return str(run_id)


class Root(NamedTuple):
    """What the handler decided for a LangChain root on the application's thread."""

    parent: str | None  # the enclosing lunatrace run (or thread message), if any
    user_id: Any
    user_props: Any
    tags: Sequence[str] | None  # the handler's own, under the run's
    metadata: Mapping[str, Any] | None


class Described(NamedTuple):
    """A start's run type, name, input, llm params, extra metadata and model."""

    run_type: str
    name: str
    input: Any
    params: Any
    extra: dict[str, Any] | None
    model: str | None


# --- starts ---------------------------------------------------------------------------------


class LangChainStart(NamedTuple):
    """An ``on_*_start`` hook: its arguments, and what the calling thread knew."""

    hook: str
    run_id: Any
    parent: Any  # LangChain's parent run id (a folded run's replaced by its shown ancestor)
    root: Root | None  # set for a root only
    frame: RunFrame | None  # the innermost decorated function around the call
    user: User | None
    context_tags: tuple[str, ...]
    context_metadata: Mapping[str, Any]
    serialized: Any
    payload: Any
    tags: Sequence[str] | None
    metadata: Mapping[str, Any] | None
    run_name: str | None
    detail: Any  # the one hook-specific keyword argument (see ``handler._DETAIL``)

    def build(self, ts_ms: int, ns: int, runs: RunRegistry) -> dict[str, Any]:
        described = _describe(self, _agent_name(self, runs))
        root = self.root
        conversation = _conversation(self) if root is not None else None
        if root is None:
            parent = _parent(runs, self.parent, self.frame)
        elif root.parent is None and conversation is not None and is_resume(self.payload):
            parent = runs.resume(conversation)  # one story: under the run that paused
        else:
            parent = root.parent
        user_id, user_props = (root.user_id, root.user_props) if root is not None else (None, None)
        tags, metadata = _tags_and_metadata(self, described.extra)
        rid = run_key(self.run_id)
        event = start_event(
            described.run_type,
            rid,
            parent=parent,
            name=described.name,
            input=described.input,
            params=described.params,
            tags=tags,
            metadata=metadata,
            user_id=user_id,
            user_props=user_props,
            user=self.user,
            context_tags=self.context_tags,
            context_metadata=self.context_metadata,
        )
        trace = runs.trace_of(parent)
        prompt = described.input if described.run_type == "llm" else None
        state = RunState(described.run_type, trace[0] if trace else rid, True, ns, described.model, prompt)
        runs.add(rid, state)
        if described.run_type == "agent" and described.name == (self.metadata or {}).get("agent_name"):
            marks = runs.marks(rid)
            if marks is not None:
                marks.agent = described.name
        if conversation is not None:
            marks = runs.marks(rid)
            if marks is not None:
                marks.conversation = conversation
        return event


def _conversation(start: LangChainStart) -> str | None:
    """The LangGraph thread a root runs in (what a later ``Command(resume=...)`` names)."""
    thread_id = (start.metadata or {}).get("thread_id")
    return None if thread_id is None else str(thread_id)


def _parent(runs: RunRegistry, parent: Any, frame: RunFrame | None) -> str | None:
    """The parent to send for a run whose LangChain parent is ``parent``.

    A run the registry knows (open, or ended: a late child), else (a parent never seen:
    the handler was attached below the root) the lunatrace run enclosing the call, or
    none. A decorated function called inside the LangChain parent, in which this run
    started, is the parent instead.
    """
    rid = runs.parent(None if parent is None else run_key(parent), frame.run_id if frame else None)
    if frame is not None and rid in frame.framework_runs:
        return frame.run_id
    return rid


def _agent_name(start: LangChainStart, runs: RunRegistry) -> str | None:
    """The ``agent_name`` a chain's metadata gives it (as the official handler reads it),
    unless it is only inherited: LangChain copies metadata to every child, and only the
    outermost run that carries a name is that agent."""
    if start.hook != "on_chain_start" or not start.metadata:
        return None
    name = start.metadata.get("agent_name")
    if not name or not isinstance(name, str):
        return None
    if start.parent is not None:
        marks = runs.marks(run_key(start.parent), make=False)
        if marks is not None and marks.agent == name:
            return None
    return name


def _describe(start: LangChainStart, agent_name: str | None = None) -> Described:
    hook, serialized, payload, run_name, detail = (
        start.hook,
        start.serialized,
        start.payload,
        start.run_name,
        start.detail,
    )
    if hook == "on_chain_start":
        name = run_name or mapping.class_name(serialized) or "chain"
        # Streaming chains start with the placeholder ``{"input": ""}`` and send their
        # real inputs with their end; depending on the release ``defers_inputs`` (the
        # detail) is then true, false or absent, so the placeholder itself is the signal.
        # (Only a dict can equal it: comparing a message would run pydantic's ``__eq__``.)
        if detail or (type(payload) is dict and payload == _STREAM_PLACEHOLDER):
            payload = None
        if agent_name:
            return Described("agent", agent_name, _chain_field(payload, "input"), None, None, None)
        run_type = mapping.chain_type(name, start.metadata)
        return Described(run_type, name, _chain_field(payload, "input"), None, None, None)
    if hook in ("on_chat_model_start", "on_llm_start"):
        model = mapping.model_name(serialized, start.metadata, detail)
        if hook == "on_chat_model_start":
            payload = Deferred(prompt_batches_to_openai, payload)
        elif len(payload) == 1:
            payload = [{"role": "user", "content": payload[0]}]
        else:
            payload = [[{"role": "user", "content": p}] for p in payload]
        extra = {"runName": run_name} if run_name else None
        params = mapping.llm_params(detail, start.metadata) or None
        return Described("llm", model, payload, params, extra, model)
    if hook == "on_tool_start":
        extra = {"toolCallId": detail} if detail else None
        name = run_name or mapping.class_name(serialized) or "tool"
        return Described("tool", name, payload, None, extra, None)
    name = run_name or mapping.class_name(serialized) or "retriever"
    return Described("retriever", name, payload, None, None, None)


def _tags_and_metadata(
    start: LangChainStart, extra: Mapping[str, Any] | None
) -> tuple[list[str] | None, dict[str, Any] | None]:
    """A start's tags and metadata.

    LangChain's bookkeeping tags and metadata are dropped, a retry tag becomes
    ``retryAttempt``, and a root gets the handler's own tags and metadata under its own.
    """
    tags, metadata = start.tags, start.metadata
    run_tags = mapping.user_tags(tags) if tags else None
    run_metadata = mapping.user_metadata(metadata) if metadata else None
    if extra:
        run_metadata = {**run_metadata, **extra} if run_metadata else dict(extra)
    if run_tags:  # retry tags are user-visible tags: only look when some are left
        attempt = mapping.retry_attempt(run_tags)
        if attempt is not None:
            run_metadata = {**(run_metadata or {}), "retryAttempt": attempt}
    root = start.root
    if root is not None and root.tags:
        run_tags = list(dict.fromkeys([*root.tags, *(run_tags or ())]))
    if root is not None and root.metadata:
        run_metadata = {**root.metadata, **(run_metadata or {})}
    return run_tags or None, run_metadata or None


# --- ends -------------------------------------------------------------------------------------


class LangChainEnd(NamedTuple):
    """An ``on_*_end`` or ``on_*_error`` hook: the run's outcome (a chain's deferred inputs)."""

    hook: str
    run_id: Any
    parent: Any  # LangChain's parent run id (a folded run's replaced by its shown ancestor)
    outcome: Any
    inputs: Any

    def build(self, ts_ms: int, ns: int, runs: RunRegistry) -> dict[str, Any] | None:
        rid = run_key(self.run_id)
        marks = runs.take_marks(rid)
        state = runs.close(rid)
        if state is None:
            return None
        parent = None if self.parent is None else run_key(self.parent)
        return _ENDINGS[self.hook](_Ending(rid, state, marks, parent, runs), self.outcome, self.inputs)

    def ended_run(self) -> str:
        """The run this record ends (see ``events.HookRecord.dropped``)."""
        return run_key(self.run_id)


class _Ending(NamedTuple):
    rid: str
    state: RunState
    marks: Marks | None
    parent: str | None
    runs: RunRegistry

    def metadata(self, metadata: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """``metadata`` with the annotations recorded on the run (custom events...)."""
        if self.marks is not None and self.marks.annotations:
            return {**(metadata or {}), "customEvents": self.marks.annotations}
        return metadata

    def end(self, output: Any, inputs: Any = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        return end_event(
            self.state.run_type, self.rid, output=output, input=inputs, metadata=self.metadata(metadata)
        )

    def error(self, error: BaseException | str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        return error_event(self.state.run_type, self.rid, error, self.metadata(metadata))

    def pause_parent(self, asked: Any) -> None:
        """Tell the parent that work under it paused for a human (``asked``: what it asks)."""
        marks = None if self.parent is None else self.runs.marks(self.parent)
        if marks is not None and marks.paused is None:
            marks.paused = asked


def _chain_end(ending: _Ending, outputs: Any, inputs: Any) -> dict[str, Any]:
    """Output and (streaming) inputs without LangChain's wrappers.

    A LangGraph graph whose node paused on ``interrupt()`` returns normally: its root is
    marked ``interrupted``, with what the interrupts ask as its output (as the node that
    paused has), so that the trace reads as paused rather than done.
    """
    marks = ending.marks
    if marks is not None and marks.paused is not None:
        if ending.parent is None:
            if marks.conversation is not None:
                ending.runs.pause(marks.conversation, ending.rid)
            return ending.end(marks.paused, _chain_field(inputs, "input"), {"interrupted": True})
        ending.pause_parent(marks.paused)
    return ending.end(_chain_field(outputs, "output"), _chain_field(inputs, "input"))


def _llm_end(ending: _Ending, response: Any, inputs: Any) -> dict[str, Any]:
    """The assistant message(s), usage, the model that answered, time to first token.

    Without reported usage, the end carries what a token estimate needs: the model (the
    one that answered, else the start's), the prompt and the output.
    """
    output = Deferred(generations_to_openai, getattr(response, "generations", None) or [])
    metadata: dict[str, Any] = {}
    state, marks = ending.state, ending.marks
    if marks is not None and marks.first_token_ns is not None:
        metadata["timeToFirstTokenMs"] = round((marks.first_token_ns - state.started_ns) / 1e6, 2)
    model = mapping.response_model(response)
    if model:
        metadata["responseModel"] = model
    return end_event(
        "llm",
        ending.rid,
        output=output,
        usage=mapping.usage_of(response),
        metadata=ending.metadata(metadata),
        model=model or state.model,
        prompt=state.prompt,
    )


def _tool_end(ending: _Ending, output: Any, inputs: Any) -> dict[str, Any]:
    """A ``ToolMessage``'s content and call id; an error status ends the run as an error."""
    metadata = None
    if getattr(output, "type", None) == "tool":  # a ToolMessage
        content = getattr(output, "content", None)
        call_id = getattr(output, "tool_call_id", None)
        # Older LangChain releases pass tool_call_id only here, not to on_tool_start.
        metadata = {"toolCallId": call_id} if call_id else None
        if getattr(output, "status", None) == "error":
            return ending.error(content if isinstance(content, str) else repr(content), metadata)
        output = content
    return ending.end(output, None, metadata)


def _retriever_end(ending: _Ending, documents: Any, inputs: Any) -> dict[str, Any]:
    return ending.end(Deferred(documents_to_dicts, documents))


def _failure(ending: _Ending, error: BaseException, inputs: Any) -> dict[str, Any]:
    """An error with message and stack; LangGraph control flow ends the run normally instead."""
    if mapping.is_control_flow(error):
        metadata = {"interrupted": True, "interruptType": type(error).__name__}
        asked = mapping.interrupt_payload(error)
        if mapping.is_pause(error):
            ending.pause_parent(asked)
        return ending.end(asked, None, metadata)
    return ending.error(error)


_ENDINGS: dict[str, Callable[[_Ending, Any, Any], dict[str, Any]]] = {
    "on_chain_end": _chain_end,
    "on_llm_end": _llm_end,
    "on_tool_end": _tool_end,
    "on_retriever_end": _retriever_end,
    **{f"on_{kind}_error": _failure for kind in ("chain", "llm", "tool", "retriever")},
}


# --- events on open runs ------------------------------------------------------------------


class LangChainFirstToken(NamedTuple):
    """A streaming llm run's first token: its time is kept (no event of its own)."""

    run_id: Any

    def build(self, ts_ms: int, ns: int, runs: RunRegistry) -> None:
        marks = runs.marks(run_key(self.run_id))
        if marks is not None and marks.first_token_ns is None:
            marks.first_token_ns = ns


class LangChainAnnotation(NamedTuple):
    """A named event on a run (custom event, retry, agent step), kept for its end's metadata."""

    run_id: Any
    name: str
    data: Any

    def build(self, ts_ms: int, ns: int, runs: RunRegistry) -> None:
        marks = runs.marks(run_key(self.run_id))
        if marks is not None and len(marks.annotations) < MAX_ANNOTATIONS:
            marks.annotations.append({"name": str(self.name), "data": self.data, "timestampMs": ts_ms})


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
    chain inputs), is only unwrapped, here. A parser's output is a ``str`` subclass
    (``TextAccessor``): its content is taken as a plain string.
    """
    if value is None or type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if type(value) is dict and all(type(item) in _SCALARS for item in value.values()):
        return mapping.unwrap(value, key)
    return Deferred(_unwrapped_input if key == "input" else _unwrapped_output, value)
