"""The traced Messages API methods: what ``messages.create`` and ``messages.stream`` record.

``create`` (and ``parse``, where the client release has it) is a plain provider endpoint:
the request's model, prompt and parameters, then the ``Message`` it returned, or, with
``stream=True``, the raw events of the stream it returned (:mod:`.streamed`).

``messages.stream(...)`` returns the SDK's own stream manager, and its ``MessageStream``
does everything the application sees (``text_stream``, ``get_final_message()``, the
parsed events) over one raw event stream, which the manager opens when it is entered.
The manager is kept as the SDK made it; only the request it will make is replaced by one
that returns that raw stream traced. Every helper of the SDK then works exactly as
without lunatrace, and the run ends with the raw stream: read to its end, closed
(leaving the ``with`` block) or garbage-collected.

Streams are traced in place (:mod:`lunatrace.integrations.providers.inplace`), as every
provider's are: older releases' ``Stream`` answers ``isinstance`` for its own instances only.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any

from lunatrace.core.guard import failed
from lunatrace.core.serialize import Deferred
from lunatrace.integrations.anthropic.mapping import (
    field,
    input_messages,
    output_message,
    request_model,
    request_params,
    usage_metadata,
    usage_of,
)
from lunatrace.integrations.anthropic.streamed import StreamedMessage
from lunatrace.integrations.providers import Answer, ProviderCall, Request
from lunatrace.integrations.providers.inplace import in_place, in_place_async
from lunatrace.integrations.providers.methods import begin, returned
from lunatrace.integrations.providers.params import is_raw_response, snapshot
from lunatrace.integrations.providers.patching import Wrapper

# The part of ``metadata`` the Messages API takes itself: it is passed on to the API, the
# whole mapping is recorded as the run's metadata.
PROVIDER_METADATA_KEYS = frozenset({"user_id"})


def _prompt(value: tuple[Any, Any]) -> list[dict[str, Any]]:
    return input_messages(*value)


class MessagesEndpoint:
    """``messages.create`` / ``messages.parse``: an llm run per call."""

    run_type = "llm"
    provider_metadata = PROVIDER_METADATA_KEYS

    def request(self, kwargs: Mapping[str, Any]) -> Request | None:
        if is_raw_response(kwargs):
            return None
        system, messages = snapshot(kwargs, "system"), snapshot(kwargs, "messages")
        snapshot(kwargs, "tools")  # read by ``request_params``: a generator is read once
        return Request(request_model(kwargs), Deferred(_prompt, (system, messages)), request_params(kwargs))

    def answer(self, result: Any) -> Answer:
        usage = field(result, "usage")
        model = field(result, "model")
        return Answer(
            Deferred(output_message, result),
            usage_of(usage),
            str(model) if model else None,
            usage_metadata(usage, field(result, "stop_reason")) or None,
        )

    def accumulator(self, kwargs: Mapping[str, Any]) -> StreamedMessage | None:
        return StreamedMessage() if kwargs.get("stream") is True else None


class StreamEndpoint(MessagesEndpoint):
    """``messages.stream(...)``: always a stream."""

    def accumulator(self, kwargs: Mapping[str, Any]) -> StreamedMessage | None:
        return StreamedMessage()


MESSAGES = MessagesEndpoint()
STREAM = StreamEndpoint()
_MANAGER_REQUEST = "__api_request"  # the manager's attribute (name-mangled) holding its request


def _hook(manager: Any, trace: Callable[[Any], Any]) -> None:
    """Replace the request the manager will make by ``trace(request)``."""
    for cls in type(manager).__mro__:
        attribute = f"_{cls.__name__.lstrip('_')}{_MANAGER_REQUEST}"
        if attribute in vars(manager):
            setattr(manager, attribute, trace(getattr(manager, attribute)))
            return
    failed(
        "messages.stream", TypeError("the stream manager has no request to trace"), "the stream is untraced"
    )


def _stream_wrapper(trace: Callable[[Any, ProviderCall, StreamedMessage], Any]) -> Wrapper:
    """The wrapper of a ``stream`` method: its extras taken out, the SDK's manager returned
    with ``trace(request, call, accumulator)`` as the request it will make."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def stream(*args: Any, **kwargs: Any) -> Any:
            call, accumulator = begin(STREAM, kwargs)
            manager = original(*args, **kwargs)
            if call is not None and isinstance(accumulator, StreamedMessage):
                try:
                    _hook(manager, lambda request: trace(request, call, accumulator))
                except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: runs in every call
                    failed("messages.stream", exc, "the stream is untraced")
            return manager

        return stream

    return wrap


def _sync_request(request: Callable[[], Any], call: ProviderCall, accumulator: StreamedMessage) -> Any:
    def traced_request() -> Any:
        try:
            raw = request()
        except BaseException as exc:
            call.fail(exc)
            raise
        return returned(STREAM, call, accumulator, raw, in_place)

    return traced_request


class _AsyncRequest:
    """The async manager's request (an awaitable it awaits once, on ``async with``),
    awaited through, its raw stream returned traced. Not a coroutine: a manager never
    entered leaves only the SDK's own un-awaited request behind."""

    __slots__ = ("accumulator", "call", "request")

    def __init__(self, request: Any, call: ProviderCall, accumulator: StreamedMessage) -> None:
        self.request = request
        self.call = call
        self.accumulator = accumulator

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            raw = yield from self.request.__await__()
        except BaseException as exc:
            self.call.fail(exc)
            raise
        return returned(STREAM, self.call, self.accumulator, raw, in_place_async)


traced_stream = _stream_wrapper(_sync_request)
"""The wrapper of ``Messages.stream``: the manager the SDK made, its request traced."""
traced_async_stream = _stream_wrapper(_AsyncRequest)
"""The wrapper of ``AsyncMessages.stream`` (a plain method returning an async manager)."""
