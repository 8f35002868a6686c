"""The traced method: what replaces ``create`` (or ``parse``, ``embeddings.create``...).

A provider describes each endpoint once (an :class:`Endpoint`); :func:`traced` and
:func:`traced_async` turn that description into the wrapper :class:`~.patching.Patch`
installs. The wrapper takes the per-call extras out of the keyword arguments, calls the
original with the rest, and returns exactly what it returned (a stream: the same
object, observed in place, see :mod:`.inplace`) or raises exactly what it raised. Its
own failures go to the guard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from lunatrace.core.guard import failed
from lunatrace.integrations.providers.calls import Answer, ProviderCall, Request
from lunatrace.integrations.providers.extras import EXTRA_KEYWORDS, take_extras
from lunatrace.integrations.providers.inplace import in_place, in_place_async
from lunatrace.integrations.providers.streams import Accumulator, StreamRun

_EFFECT = "the call is unaffected"
# What a stream the client returned is handed back as, reporting to its run.
StandIn = Callable[[Any, StreamRun], Any]


class Endpoint(Protocol):
    """How one provider method's calls map to a run (all on the caller's thread, cheap)."""

    run_type: str  # "llm" or "embed"

    def request(self, kwargs: Mapping[str, Any]) -> Request | None:
        """The run's request from the call's keyword arguments (extras already taken out);
        ``None`` leaves the call untraced (a raw-response call, say)."""
        ...

    def answer(self, result: Any) -> Answer:
        """The run's answer from what the method returned (not for streams)."""
        ...

    def accumulator(self, kwargs: Mapping[str, Any]) -> Accumulator | None:
        """A fresh collector when the call streams (``stream=True``), else ``None``."""
        ...

    # Optional: ``provider_metadata``, the keys of ``metadata`` the provider's API takes
    # itself (Anthropic's ``user_id``): those are passed on to the client as ``metadata``,
    # while the whole mapping is the run's metadata.


def begin(endpoint: Endpoint, kwargs: dict[str, Any]) -> tuple[ProviderCall | None, Accumulator | None]:
    """Take the extras out of ``kwargs`` (in place) and make the call's run, not started
    yet, with its accumulator if it streams; ``(None, None)``: the call is untraced.
    For a method that returns something other than the call's result (a stream manager
    that makes the request later), with :func:`returned` once the result is in."""
    try:
        extras = take_extras(kwargs, getattr(endpoint, "provider_metadata", frozenset()))
    except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: runs in every call
        failed("per-call extras of a provider call", exc, "the call runs untraced")
        for key in EXTRA_KEYWORDS:
            kwargs.pop(key, None)  # never handed to the client, whatever happened
        return None, None
    try:
        request = endpoint.request(kwargs)
        if request is None:
            return None, None
        accumulator = endpoint.accumulator(kwargs)
        return ProviderCall(endpoint.run_type, request, extras, later=accumulator is not None), accumulator
    except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: runs in every call
        failed(f"request of a provider {endpoint.run_type} call", exc, "the call runs untraced")
        return None, None


def returned(
    endpoint: Endpoint,
    call: ProviderCall,
    accumulator: Accumulator | None,
    result: Any,
    stand_in: StandIn,
) -> Any:
    """What the traced method returns for ``result``: a stream's stand-in, or ``result``
    itself once the run has ended with its answer."""
    if accumulator is not None:
        try:
            return stand_in(result, StreamRun(call, accumulator))
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: runs in every call
            failed(f"stream of a provider {endpoint.run_type} call", exc, "the stream is returned untraced")
            return result
    try:
        answer = endpoint.answer(result)
    except Exception as exc:  # noqa: BLE001 - an answer that defeats the provider's mapping
        failed(f"answer of a provider {endpoint.run_type} call", exc, "the run ends without output")
        answer = Answer(None)
    call.end(answer)
    return result


def traced(
    endpoint: Endpoint, stand_in: StandIn = in_place
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The wrapper for a synchronous method; a stream it returns is observed by
    ``stand_in`` (:func:`~.inplace.in_place`: the client's own stream, in place)."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def traced_call(*args: Any, **kwargs: Any) -> Any:
            call, accumulator = begin(endpoint, kwargs)
            if call is None:
                return original(*args, **kwargs)
            try:
                result = original(*args, **kwargs)
            except BaseException as exc:
                call.fail(exc)
                raise
            return returned(endpoint, call, accumulator, result, stand_in)

        return traced_call

    return wrap


def traced_async(
    endpoint: Endpoint, stand_in: StandIn = in_place_async
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """The wrapper for a coroutine method (``AsyncOpenAI``, ``AsyncAnthropic``); a stream
    it returns is observed by ``stand_in`` (:func:`~.inplace.in_place_async`)."""

    def wrap(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def traced_call(*args: Any, **kwargs: Any) -> Any:
            call, accumulator = begin(endpoint, kwargs)
            if call is None:
                return await original(*args, **kwargs)
            try:
                result = await original(*args, **kwargs)
            except BaseException as exc:
                call.fail(exc)
                raise
            return returned(endpoint, call, accumulator, result, stand_in)

        return traced_call

    return wrap
