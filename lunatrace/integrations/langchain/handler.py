"""The LangChain callback handler: LangChain's run lifecycle, queued for the worker.

Why a *sync*, *inline* handler: an ``AsyncCallbackHandler`` costs milliseconds per invoke
on the sync path, and a non-inline sync handler is hopped to a thread pool for every
event under ``ainvoke``. Inline, the hooks run on the application's thread, so each does
as little as it can: it decides only what cannot wait (a run folded away, a trace not
sampled, a root's parent and user, which read the caller's context) and queues its
arguments as they are (``Tracer.queue_record``). Everything else (names, run types,
parents, payloads, usage, the state of open runs) is worked out by the background worker
(:mod:`.runs`), in queue order.

Runs are identified by LangChain's own ``run_id`` and parented by ``parent_run_id``
only, so one handler can serve any number of threads, tasks and requests at once. What
the hooks keep (folded internal runs, unsampled traces, thread exchanges, streams that
have started) is keyed by run id and dropped when the run ends.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from lunatrace.api import Thread, get_tracer, tracer_for
from lunatrace.core import context
from lunatrace.core.events import error_payload, new_record
from lunatrace.core.guard import failed, never_raises
from lunatrace.core.ignore import Ignore, IgnoreRules
from lunatrace.core.serialize import Deferred
from lunatrace.core.tracer import FROM_CONTEXT, Tracer
from lunatrace.integrations.langchain import mapping
from lunatrace.integrations.langchain.convert import is_message, message_to_openai
from lunatrace.integrations.langchain.runs import (
    LangChainAnnotation,
    LangChainEnd,
    LangChainFirstToken,
    LangChainStart,
    Root,
)

logger = logging.getLogger("lunatrace")

_MISSING: Any = object()
_SKIP: Any = object()
# Folded internal runs (``langsmith:hidden``) -> the LangChain parent their children get
# instead (``None``: they become roots). Shared by all handlers (run ids are unique) so
# the framework resolver can see it.
HIDDEN: dict[Any, Any] = {}
# Bound on each of these maps: entries of runs that never end (an abandoned generator)
# must not accumulate forever; past the bound the oldest half is forgotten.
MAX_ENTRIES = 50_000
_FOLDABLE = frozenset({"on_chain_start"})
# The one keyword argument of each start hook the worker needs besides the run's name
# (the keyword dict itself is not kept: each object waiting in the queue is work for the
# garbage collector). A retriever's start needs none.
_DETAIL: dict[str, str] = {
    "on_chain_start": "defers_inputs",
    "on_chat_model_start": "invocation_params",
    "on_llm_start": "invocation_params",
    "on_tool_start": "tool_call_id",
}
UNAFFECTED = "the LangChain run is unaffected"
# The type and default name each start hook's run is recorded with (llm runs: by type only).
_RECORDED: dict[str, tuple[str, str | None]] = {
    "on_chain_start": ("chain", "chain"),
    "on_chat_model_start": ("llm", None),
    "on_llm_start": ("llm", None),
    "on_tool_start": ("tool", "tool"),
    "on_retriever_start": ("retriever", "retriever"),
}


def _start_hook(hook: str) -> Callable[..., None]:
    """A ``*_start`` hook: queue the start (``CallbackHandler._start``), never raise.

    LangChain calls its hooks with the serialized object and the payload (inputs,
    messages, prompts or query) as positional arguments.
    """
    detail = _DETAIL.get(hook)

    def on_start(
        self: CallbackHandler,
        serialized: dict[str, Any] | None,
        payload: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            extra = kwargs.get(detail) if detail else None
            self._start(hook, serialized, payload, run_id, parent_run_id, tags, metadata, kwargs, extra)
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: never break the run
            failed(hook, exc, UNAFFECTED)

    on_start.__name__ = on_start.__qualname__ = hook
    return on_start


def _end_hook(hook: str, reply: Callable[[Any], Any] | None = None) -> Callable[..., None]:
    """A ``*_end`` or ``*_error`` hook: queue the outcome (a ``LangChainEnd``), never raise.

    A root's outcome is also its thread's reply (``reply`` picks it from the outcome;
    an error has none). A chain end may carry the inputs LangChain deferred.
    """

    def on_end(
        self: CallbackHandler, outcome: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            if self._ended(run_id):
                parent: Any = parent_run_id
                if HIDDEN and parent is not None:
                    parent = HIDDEN.get(parent, parent)
                tracer = get_tracer() if self._route is None else tracer_for(*self._route)  # inlined
                tracer.queue_hook(
                    new_record(LangChainEnd, (hook, run_id, parent, outcome, kwargs.get("inputs")))
                )
            if self._exchanges:
                self._close_exchange(run_id, outcome if reply is None else reply(outcome))
            if parent_run_id is None:
                self.tracer().root_ended()
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: never break the run
            failed(hook, exc, UNAFFECTED)

    on_end.__name__ = on_end.__qualname__ = hook
    return on_end


class _Failed:
    """A root's error as its thread's reply: the exchange is closed with it."""

    __slots__ = ("error",)

    def __init__(self, error: Any) -> None:
        self.error = error


def _no_reply(error: Any) -> _Failed:
    return _Failed(error)


def _generations(response: Any) -> Any:
    return getattr(response, "generations", None)


class CallbackHandler(BaseCallbackHandler):
    """Trace LangChain / LangGraph runs into lunatrace.

    Pass it per call (``config={"callbacks": [CallbackHandler()]}``) or install it for the
    whole process with :func:`lunatrace.integrations.langchain.instrument`.

    Options apply to the LangChain root runs the handler sees (children inherit them in
    Lunary): ``user_id``/``user_props``, ``tags``, ``metadata``; ``thread`` (a
    :class:`lunatrace.Thread` or a thread id) records each root's input and output as a
    user and an assistant message of that conversation, with the run nested under the
    user message; ``sample_rate`` keeps that fraction of whole traces; ``show_internal``
    keeps the runs LangChain marks ``langsmith:hidden`` instead of folding them away;
    ``ignore`` leaves out the runs its rules match (:class:`lunatrace.Ignore`, or a run
    type or name pattern as a string), their children attached to the nearest kept
    ancestor or, for a rule with ``children="drop"``, left out too.
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
        ignore: IgnoreRules | Sequence[Ignore | str] | None = None,
        project_key: str | None = None,
        api_url: str | None = None,
    ) -> None:
        if not 0.0 <= float(sample_rate) <= 1.0:
            raise ValueError("sample_rate must be between 0 and 1")
        if project_key is None and api_url is not None:
            raise ValueError("api_url needs the project_key of the project it serves")
        # Another project than the process's: checked now (a bad key raises here, not later).
        self._route = None if project_key is None else (project_key, api_url)
        if self._route is not None:
            tracer_for(*self._route)
        self.user_id = None if user_id is None else str(user_id)
        self.user_props = dict(user_props) if user_props else None
        self.tags = list(tags) if tags else None
        self.metadata = dict(metadata) if metadata else None
        self.thread = Thread(thread) if isinstance(thread, str) else thread
        self.sample_rate = float(sample_rate)
        self.show_internal = show_internal
        self.ignore = IgnoreRules.of(ignore)  # None without rules: the hooks then never look
        self._unsampled: dict[Any, None] = {}  # runs of traces not sampled
        self._exchanges: dict[Any, Thread] = {}  # root run id -> thread, when ``thread`` is set
        self._streaming: dict[Any, None] = {}  # llm runs whose first token was seen
        self._last_root: ContextVar[str | None] = ContextVar(f"lunatrace_root_{id(self)}", default=None)

    def __repr__(self) -> str:
        return f"CallbackHandler(user_id={self.user_id!r}, sample_rate={self.sample_rate})"

    def tracer(self) -> Tracer:
        """The tracer this handler records to: its own project's, else the process's (or
        that of the :func:`lunatrace.project` block around the call)."""
        return get_tracer() if self._route is None else tracer_for(*self._route)

    @property
    def last_trace_id(self) -> str | None:
        """The id of the last LangChain root run this handler recorded in the current
        thread or asyncio task (``None``: none yet, or the last one was sampled out).

        In Lunary's dashboard the trace is at ``<dashboard URL>/traces/<id>``; pass the id
        to :func:`lunatrace.feedback` to attach a user's verdict to that answer.
        """
        return self._last_root.get()

    # --- plumbing ------------------------------------------------------------------------

    def _start(
        self,
        hook: str,
        serialized: Any,
        payload: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
        detail: Any,
    ) -> None:
        """Queue a run start with what only the calling thread can know.

        That is whether the run is left out, a root's parent and user (read from the
        caller's context) and, for any run, the context's user, tags and metadata and
        its innermost decorated function. The rest is ``LangChainStart.build``'s job.
        """
        parent: Any = parent_run_id
        if HIDDEN and parent is not None:
            parent = HIDDEN.get(parent, parent)
        root = None
        # The checks are only called when they can say yes (the common case skips them).
        if (
            parent is None
            or self._unsampled
            or (tags and hook in _FOLDABLE and mapping.HIDDEN_TAG in tags and not self.show_internal)
            or self.ignore is not None
        ):
            root = self._admit(hook, run_id, parent, tags, metadata, payload, serialized, kwargs)
            if root is _SKIP:
                return
        frame = context.current_frame()
        tracer = get_tracer() if self._route is None else tracer_for(*self._route)  # self.tracer(), inlined
        if frame is not None and tracer.runs.ignored:
            frame = _kept_frame(frame, tracer.runs.ignored, parent)
            if frame is _SKIP:
                _remember(self._unsampled, run_id, None)
                return
        tracer.queue_hook(
            new_record(
                LangChainStart,
                (
                    hook,
                    run_id,
                    parent,
                    root,
                    frame,
                    context.current_user(),
                    context.current_tags(),
                    context.current_metadata(),
                    serialized,
                    payload,
                    tags,
                    metadata,
                    kwargs.get("name"),
                    detail,
                ),
            )
        )

    def _admit(
        self,
        hook: str,
        run_id: UUID,
        parent: Any,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        payload: Any,
        serialized: Any = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        """``_SKIP`` for a run left out (folded, ignored, or in a trace not sampled); for a
        root, its parent and user; else ``None``.

        Only chains are folded: LangChain tags are inherited, so the model calls and tools
        under a hidden chain carry the tag too, and they are the content worth seeing. A
        root's trace is sampled at the handler's rate (and the tracer's); a root started
        inside an unsampled lunatrace trace is left out with it. A run an ignore rule
        matches is folded like a hidden one, or, when the rule drops its children, left
        out like an unsampled one.
        """
        if parent is not None and self._unsampled and parent in self._unsampled:
            _remember(self._unsampled, run_id, None)
            return _SKIP
        if hook in _FOLDABLE and tags and not self.show_internal and mapping.HIDDEN_TAG in tags:
            _remember(HIDDEN, run_id, parent)
            return _SKIP
        if self.ignore is not None:
            rule = self.ignore.match(*_recorded(hook, serialized, kwargs, metadata))
            if rule is not None:
                _remember(self._unsampled if rule.drops else HIDDEN, run_id, None if rule.drops else parent)
                return _SKIP
        if parent is not None:
            return None
        tracer = self.tracer()
        context_parent = tracer.resolve_parent(FROM_CONTEXT)
        rate = self.sample_rate * tracer.config.sample_rate
        if (context_parent is not None and not tracer.is_sampled(context_parent)) or (
            rate < 1.0 and random.random() >= rate
        ):
            _remember(self._unsampled, run_id, None)
            self._last_root.set(None)
            return _SKIP
        self._last_root.set(str(run_id))
        user_id, user_props = self._user(metadata)
        if self.thread is not None:
            context_parent = self._open_exchange(run_id, payload, user_id, user_props)
        return Root(context_parent, user_id, user_props, self.tags, self.metadata)

    def _ended(self, run_id: UUID) -> bool:
        """Drop what the hooks kept about an ending run; ``False`` if it was left out."""
        if HIDDEN and HIDDEN.pop(run_id, _MISSING) is not _MISSING:
            return False
        if self._unsampled and self._unsampled.pop(run_id, _MISSING) is not _MISSING:
            return False
        if self._streaming:
            self._streaming.pop(run_id, None)
        return True

    def _user(self, metadata: Mapping[str, Any] | None) -> tuple[Any, Any]:
        if metadata:
            user_id = metadata.get("user_id") or metadata.get("userId")
            if user_id is not None:
                return str(user_id), metadata.get("user_props") or metadata.get("userProps")
        return self.user_id, self.user_props

    def _open_exchange(self, run_id: UUID, payload: Any, user_id: Any, user_props: Any) -> str:
        thread = self.thread
        assert thread is not None
        _remember(self._exchanges, run_id, thread)
        return self.tracer().track_message(
            thread.id,
            "user",
            _chat_text(payload, "input"),
            thread_tags=thread.tags,
            user_id=user_id if user_id is not None else thread.user_id,
            user_props=user_props or thread.user_props,
        )

    def _close_exchange(self, run_id: UUID, output: Any) -> None:
        """Answer the exchange a root opened, whatever its outcome.

        The server merges a user message into the open exchange until an assistant message
        closes it: a root that failed (or returned nothing) and sent no answer would have
        the next question and its answer filed under this one. A failure is answered with
        its error message, marked ``status: error`` in the message's metadata.
        """
        thread = self._exchanges.pop(run_id, None)
        if thread is None:
            return
        if isinstance(output, _Failed):
            error = output.error
            text = error_payload(error)["message"] if isinstance(error, BaseException) else str(error)
            self._answer(thread, text, {"status": "error"})
        else:
            self._answer(thread, "" if output is None else _chat_text(output, "output"))

    def _answer(self, thread: Thread, content: Any, metadata: Mapping[str, Any] | None = None) -> None:
        self.tracer().track_message(
            thread.id,
            "assistant",
            content,
            thread_tags=thread.tags,
            user_id=thread.user_id,
            user_props=thread.user_props,
            metadata=metadata,
        )

    def _annotate(self, run_id: UUID, name: str, data: Any) -> None:
        """Record an event on a run (on its shown ancestor when the run is folded)."""
        target: Any = run_id
        if HIDDEN:
            target = HIDDEN.get(target, target)
        if target is not None:
            self.tracer().queue_hook(LangChainAnnotation(target, name, data))

    # --- chains and agents -----------------------------------------------------------------

    on_chain_start = _start_hook("on_chain_start")
    on_chain_end = _end_hook("on_chain_end")
    on_chain_error = _end_hook("on_chain_error", _no_reply)

    @never_raises("on_agent_action", None, UNAFFECTED)
    def on_agent_action(
        self, action: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        data = {"tool": getattr(action, "tool", None), "toolInput": getattr(action, "tool_input", None)}
        self._annotate(run_id, "agent_action", data)

    @never_raises("on_agent_finish", None, UNAFFECTED)
    def on_agent_finish(
        self, finish: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._annotate(run_id, "agent_finish", getattr(finish, "return_values", None))

    # --- models ------------------------------------------------------------------------------

    on_chat_model_start = _start_hook("on_chat_model_start")
    on_llm_start = _start_hook("on_llm_start")

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
            if run_id not in self._streaming:  # only the first token's time is kept
                _remember(self._streaming, run_id, None)
                self.tracer().queue_hook(LangChainFirstToken(run_id))
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: never break the run
            failed("on_llm_new_token", exc, UNAFFECTED)

    on_llm_end = _end_hook("on_llm_end", _generations)
    on_llm_error = _end_hook("on_llm_error", _no_reply)

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
            payload = inputs if inputs is not None else input_str  # structured inputs first
            call_id = kwargs.get("tool_call_id")
            self._start(
                "on_tool_start", serialized, payload, run_id, parent_run_id, tags, metadata, kwargs, call_id
            )
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: never break the run
            failed("on_tool_start", exc, UNAFFECTED)

    on_tool_end = _end_hook("on_tool_end")
    on_tool_error = _end_hook("on_tool_error", _no_reply)

    # --- retrievers --------------------------------------------------------------------------

    on_retriever_start = _start_hook("on_retriever_start")
    on_retriever_end = _end_hook("on_retriever_end")
    on_retriever_error = _end_hook("on_retriever_error", _no_reply)

    # --- events on a run -------------------------------------------------------------------

    @never_raises("on_custom_event", None, UNAFFECTED)
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
        self._annotate(run_id, name, data)

    @never_raises("on_retry", None, UNAFFECTED)
    def on_retry(
        self, retry_state: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        outcome = getattr(retry_state, "outcome", None)
        error = outcome.exception() if outcome is not None and outcome.failed else None
        data = {"attempt": getattr(retry_state, "attempt_number", None)}
        if error is not None:
            data["error"] = f"{type(error).__name__}: {error}"
        self._annotate(run_id, "retry", data)


def _recorded(
    hook: str, serialized: Any, kwargs: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None
) -> tuple[str, str | None]:
    """The type and name a start's run is recorded with, as ignore rules match them: the
    ``name`` given to the call, else the serialized class name; llm runs by type only."""
    run_type, default = _RECORDED[hook]
    if default is None:
        return run_type, None
    name = (kwargs or {}).get("name") or mapping.class_name(serialized) or default
    return (mapping.chain_type(name, metadata) if run_type == "chain" else run_type), name


def _kept_frame(frame: context.RunFrame | None, ignored: Mapping[str, Any], parent: Any) -> Any:
    """The innermost decorated function around a run that was not ignored (``_SKIP``: the
    run sits inside one ignored with its children, and is left out too).

    A run nests under the innermost function when it started inside that function's
    LangChain parent (``parent`` in the frame's ``framework_runs``); an ignored function
    gives way to the next one out, which the run nests under only on the same terms.
    """
    key = None if parent is None else str(parent)
    while frame is not None and (entry := ignored.get(frame.run_id)) is not None:
        if entry.drop and key is not None and key in frame.framework_runs:
            return _SKIP
        frame = frame.parent
    return frame


def _remember(store: dict[Any, Any], key: Any, value: Any) -> None:
    """Add an entry to a run-keyed map, forgetting the oldest half past :data:`MAX_ENTRIES`."""
    if len(store) >= MAX_ENTRIES:
        for old in list(store)[: MAX_ENTRIES // 2]:
            store.pop(old, None)
    store[key] = value


def _chat_text(value: Any, wrapper_key: str) -> Any:
    """The text of a chat exchange side: a root's input or output as the user would say it.

    A string stays; a message in any form LangChain accepts (a message object, a
    ``("human", "...")`` tuple, a ``{"role": ..., "content": ...}`` dict), or the last of
    a graph state's ``messages``, becomes its content; a one-key input its value; LLM
    generations their message's content. Anything else is kept as it is.
    """
    if isinstance(value, Deferred):
        value = value.value
    value = mapping.unwrap(value, wrapper_key)
    if isinstance(value, Mapping) and not _is_message_dict(value):
        messages = value.get("messages")
        if isinstance(messages, Sequence) and messages and not isinstance(messages, str):
            value = messages[-1]
        elif len(value) == 1:
            value = next(iter(value.values()))
    if isinstance(value, list) and value:
        first = value[0]
        if isinstance(first, list) and first:
            value = getattr(first[0], "message", value)  # LLM generations
    if is_message(value) or (isinstance(value, Mapping) and _is_message_dict(value)):
        return Deferred(_content, value)
    return value


def _is_message_dict(value: Mapping[str, Any]) -> bool:
    return "content" in value and ("role" in value or "type" in value)


def _content(message: Any) -> Any:
    return message_to_openai(message).get("content")


class LunaryCallbackHandler(CallbackHandler):
    """The official ``lunary`` SDK's handler constructor, so that migrating is an import.

    ``app_id`` is the project's public key (default: the configured one, from
    ``LUNARY_PUBLIC_KEY``), ``api_url`` its server; ``ignore`` takes the same rules as
    :class:`CallbackHandler`, whose other options are accepted as keywords.
    """

    def __init__(
        self,
        app_id: str | None = None,
        api_url: str | None = None,
        *,
        ignore: IgnoreRules | Sequence[Ignore | str] | None = None,
        **options: Any,
    ) -> None:
        if app_id is None and api_url is not None:
            app_id = get_tracer().config.project_key  # the configured project, on that server
            if app_id is None:
                raise ValueError("api_url needs an app_id (the project's public key)")
        super().__init__(project_key=app_id, api_url=api_url, ignore=ignore, **options)
