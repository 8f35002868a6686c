"""The LangChain callback handler: LangChain's run lifecycle -> core ``Tracer`` calls.

Why a *sync*, *inline* handler: an ``AsyncCallbackHandler`` costs milliseconds per invoke
on the sync path, and a non-inline sync handler is hopped to a thread pool for every
event under ``ainvoke``. Inline, the hooks run on the application's thread, so each does
O(1) work: it decides what must be known at once (left out or not, the parent, the run
state) and hands the tracer (``Tracer.open_run``/``close_run``, which queue one tuple
per event) the hook's arguments and a *fill*
(:func:`_fill_start`, :func:`_fill_llm_end`, :func:`_fill_chain_end`) that maps them on
the background worker, where payloads are also converted (:mod:`.convert`). No
serialization, no I/O, as few objects as possible.

Runs are identified by LangChain's own ``run_id`` and parented by ``parent_run_id``
only, so one handler can serve any number of threads, tasks and requests at once. The
handler's own state (folded internal runs, unsampled traces, thread exchanges) is keyed
by run id and dropped when the run ends; the core tracer keeps the rest.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from lunatrace.api import Thread, get_tracer
from lunatrace.core import context
from lunatrace.core.events import ESTIMATE_KEY
from lunatrace.core.serialize import Deferred
from lunatrace.core.tracer import FROM_CONTEXT, Fill
from lunatrace.integrations.langchain import mapping
from lunatrace.integrations.langchain.convert import (
    chain_payload,
    documents_to_dicts,
    generations_to_openai,
    message_to_openai,
    prompt_batches_to_openai,
)

logger = logging.getLogger("lunatrace")

_MISSING: Any = object()
# Folded internal runs (``langsmith:hidden``) -> the parent their children get instead.
# Shared by all handlers (run ids are unique) so the framework resolver can see it.
HIDDEN: dict[str, Any] = {}
# Bound on each of these maps: entries of runs that never end (an abandoned generator)
# must not accumulate forever; past the bound the oldest half is forgotten.
MAX_ENTRIES = 50_000
_FOLDABLE = frozenset({"chain"})
_STREAM_PLACEHOLDER = {"input": ""}
# id() of an open run's id object -> (that object, its string): see ``_id_str``.
_ID_STRINGS: dict[int, tuple[Any, str]] = {}


def _error_hook(hook: str) -> Callable[..., None]:
    """The ``*_error`` hooks: all four end their run the same way (see ``_error``)."""

    def on_error(
        self: CallbackHandler,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._error(run_id, error)
        except Exception as exc:  # noqa: BLE001 - never break the user's run
            self._failed(hook, exc)

    on_error.__name__ = on_error.__qualname__ = hook
    return on_error


class CallbackHandler(BaseCallbackHandler):
    """Trace LangChain / LangGraph runs into lunatrace.

    Pass it per call (``config={"callbacks": [CallbackHandler()]}``) or install it for the
    whole process with :func:`lunatrace.integrations.langchain.instrument`.

    Options apply to the LangChain root runs the handler sees (children inherit them in
    Lunary): ``user_id``/``user_props``, ``tags``, ``metadata``; ``thread`` (a
    :class:`lunatrace.Thread` or a thread id) records each root's input and output as a
    user and an assistant message of that conversation, with the run nested under the
    user message; ``sample_rate`` keeps that fraction of whole traces; ``show_internal``
    keeps the runs LangChain marks ``langsmith:hidden`` instead of folding them away.
    A per-call ``metadata={"user_id": ..., "user_props": ...}`` overrides ``user_id``.
    """

    run_inline = True
    raise_error = False

    def __init__(
        self,
        *,
        user_id: Any = None,
        user_props: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        thread: Thread | str | None = None,
        sample_rate: float = 1.0,
        show_internal: bool = False,
    ) -> None:
        if not 0.0 <= float(sample_rate) <= 1.0:
            raise ValueError("sample_rate must be between 0 and 1")
        self.user_id = None if user_id is None else str(user_id)
        self.user_props = dict(user_props) if user_props else None
        self.tags = list(tags) if tags else None
        self.metadata = dict(metadata) if metadata else None
        self.thread = Thread(thread) if isinstance(thread, str) else thread
        self.sample_rate = float(sample_rate)
        self.show_internal = show_internal
        self._unsampled: dict[str, None] = {}  # runs of traces not sampled
        self._exchanges: dict[str, Thread] = {}  # root run id -> thread, when ``thread`` is set
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"CallbackHandler(user_id={self.user_id!r}, sample_rate={self.sample_rate})"

    # --- plumbing ------------------------------------------------------------------------

    def _failed(self, hook: str, exc: Exception) -> None:
        """Log a hook failure (a warning once per hook, then debug); never re-raise."""
        if hook not in self._warned:
            self._warned.add(hook)
            logger.warning(
                "lunatrace: %s failed (%s: %s); the LangChain run is unaffected",
                hook,
                type(exc).__name__,
                exc,
            )
        else:
            logger.debug("lunatrace: %s failed again", hook, exc_info=exc)

    def _parent(self, parent_id: str | None) -> Any:
        """The lunatrace parent of a run: LangChain's parent, folded and nesting-aware."""
        if parent_id is None:
            return FROM_CONTEXT  # a LangChain root: nest under the enclosing lunatrace run
        parent: Any = parent_id
        if HIDDEN:
            parent = HIDDEN.get(parent, parent)
        frame = context.current_frame()
        if frame is not None and parent in frame.framework_runs:
            # A decorated function was called inside the LangChain parent and this run
            # started inside that function: it belongs to the function.
            return frame.run_id
        return parent

    def _skipped(self, rid: str, parent_id: str | None, tags: Sequence[str] | None, folds: bool) -> bool:
        """Whether to leave this run out: folded internal run, or a trace not sampled.

        Only chains are folded: LangChain tags are inherited, so the model calls and tools
        under a hidden chain carry the tag too, and they are the content worth seeing.
        """
        if self._unsampled and parent_id is not None and parent_id in self._unsampled:
            _remember(self._unsampled, rid, None)
            return True
        if parent_id is None and self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            _remember(self._unsampled, rid, None)
            return True
        if folds and tags and not self.show_internal and mapping.HIDDEN_TAG in tags:
            _remember(HIDDEN, rid, self._parent(parent_id))
            return True
        return False

    def _forget(self, rid: str) -> bool:
        """Drop a left-out run's state on its end; ``True`` if it was left out."""
        if HIDDEN and HIDDEN.pop(rid, _MISSING) is not _MISSING:
            return True
        if self._unsampled and rid in self._unsampled:
            self._unsampled.pop(rid, None)
            return True
        return False

    def _start(
        self,
        hook: str,
        run_type: str,
        name: str,
        payload: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        *,
        convert_input: Callable[[Any], Any] | None = None,
        invocation_params: Any = _MISSING,
        extra: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Open a run: decide on the calling thread only what must be known at once.

        That is whether the run is left out, its parent, and for a root its user and
        thread message. Filtering LangChain's tags and metadata and picking the model
        parameters is left to the worker (:func:`_fill_start`), with the arguments as
        LangChain passed them; so is wrapping a chain's ``payload`` for conversion
        (``convert_input``). Each event allocates as few objects as possible: whatever
        waits in the queue is work for the garbage collector on this thread.
        """
        rid = _opened(run_id)
        parent_id = None if parent_run_id is None else _id_str(parent_run_id)
        # The checks are only called when they can say yes (the common case skips them).
        may_skip = (
            self._unsampled
            or self.sample_rate < 1.0
            or (tags and mapping.HIDDEN_TAG in tags and run_type in _FOLDABLE and not self.show_internal)
        )
        if may_skip and self._skipped(rid, parent_id, tags, run_type in _FOLDABLE):
            return None
        user_id = user_props = None
        if parent_id is not None and not HIDDEN and context.current_frame() is None:
            parent: Any = parent_id  # what _parent answers without folds or decorated functions
        else:
            parent = self._parent(parent_id)
        handler_tags = handler_metadata = None
        if parent_id is None:
            handler_tags, handler_metadata = self.tags, self.metadata
            user_id, user_props = self._user(metadata)
            if self.thread is not None:
                parent = self._open_exchange(rid, payload, user_id, user_props)
        fill = (  # empty tags and metadata are let go: what the queue holds costs collections
            _fill_start,
            self,
            hook,
            convert_input,
            tags or None,
            metadata or None,
            extra,
            handler_tags,
            handler_metadata,
            invocation_params,
        )
        get_tracer().open_run(run_type, rid, parent, name, payload, user_id, user_props, fill)
        return rid

    def _user(self, metadata: Mapping[str, Any] | None) -> tuple[Any, Any]:
        if metadata:
            user_id = metadata.get("user_id") or metadata.get("userId")
            if user_id is not None:
                return str(user_id), metadata.get("user_props") or metadata.get("userProps")
        return self.user_id, self.user_props

    def _open_exchange(self, rid: str, payload: Any, user_id: Any, user_props: Any) -> str:
        thread = self.thread
        assert thread is not None
        _remember(self._exchanges, rid, thread)
        return get_tracer().track_message(
            thread.id,
            "user",
            _chat_text(payload, "input"),
            thread_tags=thread.tags,
            user_id=user_id if user_id is not None else thread.user_id,
            user_props=user_props or thread.user_props,
        )

    def _close_exchange(self, rid: str, output: Any) -> None:
        thread = self._exchanges.pop(rid, None)
        if thread is not None and output is not None:
            thread.track_message("assistant", _chat_text(output, "output"))

    def _end(
        self,
        run_id: UUID,
        output: Any,
        metadata: Mapping[str, Any] | None = None,
        payload: Any = None,
        fill: Fill | None = None,
    ) -> None:
        rid = _closed(run_id)
        if self._forget(rid):
            return
        get_tracer().close_run(rid, output, payload, metadata, fill)
        if self._exchanges:
            self._close_exchange(rid, output)

    def _error(self, run_id: UUID, error: BaseException) -> None:
        rid = _closed(run_id)
        if self._forget(rid):
            return
        if mapping.is_control_flow(error):
            output = mapping.interrupt_payload(error)
            metadata = {"interrupted": True, "interruptType": type(error).__name__}
            get_tracer().close_run(rid, output, None, metadata)
        else:
            get_tracer().error_run(rid, error)
        if self._exchanges:
            self._exchanges.pop(rid, None)

    def _annotate(self, run_id: UUID, name: str, data: Any) -> None:
        """Record an event on a run (on its shown ancestor when the run is folded)."""
        target: Any = _id_str(run_id)
        if HIDDEN:
            target = HIDDEN.get(target, target)
        if isinstance(target, str):
            get_tracer().custom_event(target, name, data)

    # --- chains and agents -----------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            name = kwargs.get("name") or mapping.class_name(serialized) or "chain"
            self._start(
                "on_chain_start",
                mapping.chain_type(name, metadata),
                name,
                None if _deferred_inputs(inputs, kwargs) else inputs,
                run_id,
                parent_run_id,
                tags,
                metadata,
                convert_input=_unwrapped_input,
            )
        except Exception as exc:  # noqa: BLE001 - never break the user's run
            self._failed("on_chain_start", exc)

    def on_chain_end(
        self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            self._end(run_id, outputs, None, kwargs.get("inputs"), _FILL_CHAIN_END)
        except Exception as exc:  # noqa: BLE001
            self._failed("on_chain_end", exc)

    on_chain_error = _error_hook("on_chain_error")

    def on_agent_action(
        self, action: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            data = {"tool": getattr(action, "tool", None), "toolInput": getattr(action, "tool_input", None)}
            self._annotate(run_id, "agent_action", data)
        except Exception as exc:  # noqa: BLE001
            self._failed("on_agent_action", exc)

    def on_agent_finish(
        self, finish: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            self._annotate(run_id, "agent_finish", getattr(finish, "return_values", None))
        except Exception as exc:  # noqa: BLE001
            self._failed("on_agent_finish", exc)

    # --- models ------------------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._start_llm(
                "on_chat_model_start",
                serialized,
                Deferred(prompt_batches_to_openai, messages),
                run_id,
                parent_run_id,
                tags,
                metadata,
                kwargs,
            )
        except Exception as exc:  # noqa: BLE001
            self._failed("on_chat_model_start", exc)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            if len(prompts) == 1:
                payload: Any = [{"role": "user", "content": prompts[0]}]
            else:
                payload = [[{"role": "user", "content": p}] for p in prompts]
            self._start_llm(
                "on_llm_start", serialized, payload, run_id, parent_run_id, tags, metadata, kwargs
            )
        except Exception as exc:  # noqa: BLE001
            self._failed("on_llm_start", exc)

    def _start_llm(
        self,
        hook: str,
        serialized: dict[str, Any] | None,
        payload: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        invocation_params = kwargs.get("invocation_params")
        name, _ = mapping.model_name(serialized, metadata, invocation_params)
        run_name = kwargs.get("name")
        self._start(
            hook,
            "llm",
            name,
            payload,
            run_id,
            parent_run_id,
            tags,
            metadata,
            invocation_params=invocation_params,
            extra={"runName": run_name} if run_name else None,
        )

    def on_llm_new_token(
        self,
        token: Any,
        *,
        chunk: Any = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            tracer = get_tracer()
            rid = _id_str(run_id)
            extra = tracer.run_extra(rid)
            if "ttft" not in extra:
                age = tracer.run_age(rid)
                if age is not None:
                    extra["ttft"] = round(age * 1000.0, 2)
        except Exception as exc:  # noqa: BLE001
            self._failed("on_llm_new_token", exc)

    def on_llm_end(
        self, response: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            rid = _closed(run_id)
            if self._forget(rid):
                return
            tracer = get_tracer()
            tracer.close_run(
                rid,
                Deferred(generations_to_openai, getattr(response, "generations", None) or []),
                None,
                None,
                (_fill_llm_end, self, response, tracer.extra_value(rid, "ttft")),
            )
            if self._exchanges:
                self._close_exchange(rid, getattr(response, "generations", None))
        except Exception as exc:  # noqa: BLE001
            self._failed("on_llm_end", exc)

    on_llm_error = _error_hook("on_llm_error")

    # --- tools -------------------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            name = kwargs.get("name") or mapping.class_name(serialized) or "tool"
            call_id = kwargs.get("tool_call_id")
            self._start(
                "on_tool_start",
                "tool",
                name,
                inputs if inputs is not None else input_str,
                run_id,
                parent_run_id,
                tags,
                metadata,
                extra={"toolCallId": call_id} if call_id else None,
            )
        except Exception as exc:  # noqa: BLE001
            self._failed("on_tool_start", exc)

    def on_tool_end(
        self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            metadata = None
            if getattr(output, "type", None) == "tool":  # a ToolMessage
                content = getattr(output, "content", None)
                call_id = getattr(output, "tool_call_id", None)
                # Older LangChain releases pass tool_call_id only here, not to on_tool_start.
                metadata = {"toolCallId": call_id} if call_id else None
                if getattr(output, "status", None) == "error":
                    rid = _closed(run_id)
                    if not self._forget(rid):
                        message = content if isinstance(content, str) else repr(content)
                        get_tracer().error_run(rid, message, metadata=metadata)
                    return
                output = content
            self._end(run_id, output, metadata)
        except Exception as exc:  # noqa: BLE001
            self._failed("on_tool_end", exc)

    on_tool_error = _error_hook("on_tool_error")

    # --- retrievers --------------------------------------------------------------------------

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            name = kwargs.get("name") or mapping.class_name(serialized) or "retriever"
            self._start("on_retriever_start", "retriever", name, query, run_id, parent_run_id, tags, metadata)
        except Exception as exc:  # noqa: BLE001
            self._failed("on_retriever_start", exc)

    def on_retriever_end(
        self, documents: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            self._end(run_id, Deferred(documents_to_dicts, documents))
        except Exception as exc:  # noqa: BLE001
            self._failed("on_retriever_end", exc)

    on_retriever_error = _error_hook("on_retriever_error")

    # --- events on a run -------------------------------------------------------------------

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            self._annotate(run_id, name, data)
        except Exception as exc:  # noqa: BLE001
            self._failed("on_custom_event", exc)

    def on_retry(
        self, retry_state: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            outcome = getattr(retry_state, "outcome", None)
            error = outcome.exception() if outcome is not None and outcome.failed else None
            data = {"attempt": getattr(retry_state, "attempt_number", None)}
            if error is not None:
                data["error"] = f"{type(error).__name__}: {error}"
            self._annotate(run_id, "retry", data)
        except Exception as exc:  # noqa: BLE001
            self._failed("on_retry", exc)


def _opened(run_id: Any) -> str:
    """``str(run_id)`` of a starting run, kept until its end for :func:`_id_str`.

    A ``UUID`` is formatted here from its integer: ``UUID.__str__`` slices and formats in
    Python, at a quarter more cost, and every run start pays it.
    """
    if type(run_id) is UUID:
        digits = "%032x" % run_id.int  # noqa: UP031 - the fastest spelling
        rid = "-".join((digits[:8], digits[8:12], digits[12:16], digits[16:20], digits[20:]))
    else:
        rid = str(run_id)
    if len(_ID_STRINGS) >= MAX_ENTRIES:
        _remember(_ID_STRINGS, id(run_id), (run_id, rid))
    else:
        _ID_STRINGS[id(run_id)] = (run_id, rid)
    return rid


def _id_str(run_id: Any) -> str:
    """``str(run_id)``, without ``UUID.__str__`` (slow Python) for the ids of open runs.

    LangChain passes the same ``UUID`` object as a run's id to its start and end and as
    its children's parent id. The cache holds that object, so its ``id()`` cannot be
    reused by another object while the entry exists. Any other object (an equal UUID, a
    string) simply misses; an entry whose end came with another object stays until the
    :data:`MAX_ENTRIES` bound forgets it, like the state of runs that never end.
    """
    entry = _ID_STRINGS.get(id(run_id))
    if entry is not None and entry[0] is run_id:
        return entry[1]
    return str(run_id)


def _closed(run_id: Any) -> str:
    """:func:`_id_str` of an ending run; its cache entry is dropped."""
    entry = _ID_STRINGS.pop(id(run_id), None)
    if entry is not None and entry[0] is run_id:
        return entry[1]
    return str(run_id)


def _remember(store: dict[Any, Any], key: Any, value: Any) -> None:
    """Add an entry to a run-keyed map, forgetting the oldest half past :data:`MAX_ENTRIES`."""
    if len(store) >= MAX_ENTRIES:
        for old in list(store)[: MAX_ENTRIES // 2]:
            store.pop(old, None)
    store[key] = value


def _deferred_inputs(inputs: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether LangChain will send this chain's real inputs only with its end (streaming).

    Streaming chains start with the placeholder ``{"input": ""}``; depending on the
    release, ``defers_inputs`` is then ``True``, ``False`` or absent, so the placeholder
    itself is the signal. (Only a dict can equal it: comparing a message or prompt value
    would run its model's Python ``__eq__``.)
    """
    return bool(kwargs.get("defers_inputs")) or (type(inputs) is dict and inputs == _STREAM_PLACEHOLDER)


def _fill_start(
    raw: dict[str, Any],
    handler: CallbackHandler,
    hook: str,
    convert_input: Callable[[Any], Any] | None,
    tags: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None,
    handler_tags: Sequence[str] | None,
    handler_metadata: Mapping[str, Any] | None,
    invocation_params: Any,
) -> None:
    """Set a start event's tags, metadata and (llm runs) params; runs on the worker.

    LangChain's bookkeeping tags and metadata are dropped, a retry tag becomes
    ``retryAttempt``, and a root gets the handler's own tags and metadata under its own.
    A failure is reported as the hook's (:meth:`CallbackHandler._failed`) and costs only
    these fields, not the run.
    """
    try:
        if convert_input is not None:
            raw["input"] = _deferred_payload(raw.get("input"), convert_input)
        _map_start(raw, tags, metadata, extra, handler_tags, handler_metadata, invocation_params)
    except Exception as exc:  # noqa: BLE001
        handler._failed(hook, exc)


def _map_start(
    raw: dict[str, Any],
    tags: Sequence[str] | None,
    metadata: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None,
    handler_tags: Sequence[str] | None,
    handler_metadata: Mapping[str, Any] | None,
    invocation_params: Any,
) -> None:
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


def _fill_llm_end(raw: dict[str, Any], handler: CallbackHandler, response: Any, ttft: float | None) -> None:
    """Set an llm end's usage and metadata from the ``LLMResult``; runs on the worker.

    The model the provider answered with also names the model for a token estimate
    (made only when the provider reported no usage).
    """
    try:
        _map_llm_end(raw, response, ttft)
    except Exception as exc:  # noqa: BLE001
        handler._failed("on_llm_end", exc)


def _map_llm_end(raw: dict[str, Any], response: Any, ttft: float | None) -> None:
    metadata = dict(raw.get("metadata") or {})
    if ttft is not None:
        metadata["timeToFirstTokenMs"] = ttft
    model = mapping.response_model(response)
    if model:
        metadata["responseModel"] = model
        estimate = raw.get(ESTIMATE_KEY)
        if estimate:
            raw[ESTIMATE_KEY] = (model, *estimate[1:])
    if metadata:
        raw["metadata"] = metadata
    usage = mapping.usage_of(response)
    if usage:
        raw["tokensUsage"] = usage


def _unwrapped_input(value: Any) -> Any:
    return chain_payload(mapping.unwrap(value, "input"))


def _unwrapped_output(value: Any) -> Any:
    return chain_payload(mapping.unwrap(value, "output"))


def _fill_chain_end(raw: dict[str, Any]) -> None:
    """Wrap a chain end's output (and inputs sent only now) for conversion; on the worker."""
    raw["output"] = _deferred_payload(raw.get("output"), _unwrapped_output)
    raw["input"] = _deferred_payload(raw.get("input"), _unwrapped_input)


_FILL_CHAIN_END: Fill = (_fill_chain_end,)


def _deferred_payload(value: Any, convert: Callable[[Any], Any]) -> Any:
    """A chain payload converted (and its ``{"input": ...}`` wrapper removed) when encoded."""
    if value is None or type(value) is str:
        return value
    return Deferred(convert, value)


def _chat_text(value: Any, wrapper_key: str) -> Any:
    """The content of a chat exchange side: a string, a message's content, else the value."""
    if isinstance(value, Deferred):
        value = value.value
    value = mapping.unwrap(value, wrapper_key)
    if isinstance(value, Mapping):
        messages = value.get("messages")
        if isinstance(messages, Sequence) and messages and not isinstance(messages, str):
            value = messages[-1]
        elif len(value) == 1:
            value = next(iter(value.values()))
    if isinstance(value, Sequence) and not isinstance(value, str) and value:
        first = value[0]
        if isinstance(first, Sequence) and not isinstance(first, str) and first:
            value = getattr(first[0], "message", value)  # LLM generations
    if hasattr(value, "content") and hasattr(value, "type"):
        return Deferred(lambda m: message_to_openai(m).get("content"), value)
    return value
