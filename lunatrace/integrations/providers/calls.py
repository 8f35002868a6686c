"""One provider call's run, over core: named by the model that answered, timed from the request.

The run of a call is started once the provider has answered (or failed, or sent the
first chunk of a stream), because its name must be the model id the provider reports
(``gpt-4o-mini-2024-07-18`` for a request for ``gpt-4o-mini``; an Azure deployment's
real model): Lunary reads the name on the start only, and prices by it. The start is
stamped with the counter reading taken when the call was made
(``Tracer.start_run(started_ns=...)``), so the run lasts as long as the call did.

Parent, user, tags and metadata come from the context of the call: a stream read later,
elsewhere, still nests where the call was made (the context is copied when the call is
made and the start runs in it). Every method reports its own failures to the guard and
returns normally: the call's result or exception is never touched.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import Any, NamedTuple

from lunatrace.api import get_tracer
from lunatrace.core.guard import failed
from lunatrace.core.tracer import FROM_CONTEXT, Tracer
from lunatrace.integrations.providers.extras import CallExtras

_EFFECT = "the call is unaffected"


class Request(NamedTuple):
    """What a provider call asked, as the run's start records it.

    ``input`` and ``params`` are taken on the caller's thread and must not change after
    the call (copy a list the application may append to; convert on the worker with
    :class:`~lunatrace.core.serialize.Deferred`).
    """

    model: str | None
    input: Any
    params: Mapping[str, Any] | None = None


class Answer(NamedTuple):
    """What the provider answered: the run's output, usage in the wire shape
    (``core.usage.usage_from_mapping``; ``None``: a token estimate is made), the model
    id it reported, and metadata for the run's end."""

    output: Any
    usage: Mapping[str, int] | None = None
    model: str | None = None
    metadata: Mapping[str, Any] | None = None


class ProviderCall:
    """The run of one call: :meth:`open` it (at a stream's first chunk), then
    :meth:`end` or :meth:`fail` it; either opens it first if needed."""

    __slots__ = ("context", "extras", "request", "run_id", "run_type", "started_ns", "tracer")

    def __init__(self, run_type: str, request: Request, extras: CallExtras, *, later: bool = False) -> None:
        """``later``: the run may start outside the call (a stream), so the call's context
        is kept for it."""
        self.tracer: Tracer = get_tracer()
        self.run_type = run_type
        self.request = request
        self.extras = extras
        self.started_ns = self.tracer.counter_ns()
        self.context = contextvars.copy_context() if later else None
        self.run_id: str | None = None

    def open(self, model: str | None = None) -> None:
        """Start the run, named ``model`` (the answering model), if it is not started yet."""
        if self.run_id is not None:
            return
        try:
            if self.context is None:
                self._start(model)
            else:
                self.context.run(self._start, model)
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: runs in every call
            failed(f"start of a provider {self.run_type} run", exc, _EFFECT)

    def _start(self, model: str | None) -> None:
        extras = self.extras
        parent: Any = FROM_CONTEXT
        if extras.parent is not None:
            parent = self.tracer.adopt(extras.parent) or FROM_CONTEXT
        self.run_id = self.tracer.start_run(
            self.run_type,
            extras.name or model or self.request.model,
            self.request.input,
            parent_run_id=parent,
            params=self.request.params,
            tags=extras.tags,
            metadata=extras.metadata,
            user_id=extras.user_id,
            user_props=extras.user_props,
            started_ns=self.started_ns,
        )

    def end(self, answer: Answer, metadata: Mapping[str, Any] | None = None) -> None:
        """End the run with ``answer`` (``metadata`` adds to the answer's)."""
        self.open(answer.model)
        try:
            if self.run_id is None:
                return
            merged = (
                {**answer.metadata, **metadata}
                if answer.metadata and metadata
                else answer.metadata or metadata
            )
            self._tracer().end_run(
                self.run_id,
                answer.output,
                usage=answer.usage,
                metadata=merged,
                model=answer.model or self.request.model,
            )
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: runs in every call
            failed(f"end of a provider {self.run_type} run", exc, _EFFECT)

    def fail(self, error: BaseException) -> None:
        """End the run as failed with the exception the client raised (its message carries
        the provider's status code and error message)."""
        self.open()
        try:
            if self.run_id is not None:
                self._tracer().error_run(self.run_id, error)
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: runs in every call
            failed(f"error of a provider {self.run_type} run", exc, _EFFECT)

    def _tracer(self) -> Tracer:
        """The tracer that holds the run open: the current one, unless the run was started
        in a ``project()`` block the end is outside of."""
        current = get_tracer()
        return (
            current
            if current is self.tracer or self.run_id is None or current.is_open(self.run_id)
            else self.tracer
        )
