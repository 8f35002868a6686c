"""Streamed answers: a transparent stand-in for the client's stream that ends the run.

``create(stream=True)`` returns the client's own stream object; the traced method
returns a :class:`TracedStream` (or :class:`AsyncTracedStream`) around it instead. It
is the stream as far as the application can tell: iterating it yields the client's own
items, ``with`` and ``close()`` reach the client's, any other attribute (``response``,
``until_done``...) is the client's, and ``isinstance(s, openai.Stream)`` still holds
(``__class__`` answers the wrapped type; ``type()`` alone tells them apart).

Each item goes to the provider's :class:`Accumulator` (cheap work: appending the
chunk's pieces). The run is started at the first item that reports the model (or
carries output), named by that model, and ended once: when the stream is exhausted
(the whole answer), closed early or garbage-collected unread (the partial answer,
marked ``cancelled``), or fails mid-way (the error). A stream that stays referenced
and unread forever is closed by core's sweep of abandoned runs.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from lunatrace.core.guard import failed
from lunatrace.integrations.providers.calls import Answer, ProviderCall

_EFFECT = "the stream is unaffected"
_CANCELLED = {"cancelled": True}


class Accumulator(Protocol):
    """A provider's collector for one stream's items."""

    model: str | None  # the model id the stream reports (read at the first item)

    def add(self, item: Any) -> bool:
        """Take one item; ``True`` if it carried generated output (the first such item is
        the stream's first token). Must not raise for an item it does not know."""
        ...

    def answer(self) -> Answer:
        """The answer so far (the whole one once the stream is exhausted)."""
        ...


class StreamRun:
    """The run of one stream: what its stand-in reports to. Holds no reference to the
    stand-in, so that the stand-in's finalizer can end the run once it is collected."""

    __slots__ = ("__weakref__", "accumulator", "call", "done", "first_ns")

    def __init__(self, call: ProviderCall, accumulator: Accumulator) -> None:
        self.call = call
        self.accumulator = accumulator
        self.first_ns: int | None = None
        self.done = False

    def add(self, item: Any) -> None:
        try:
            carried = self.accumulator.add(item)
            call = self.call
            if call.run_id is None and (carried or self.accumulator.model):
                call.open(self.accumulator.model)  # once the model or the answer shows
            if carried and self.first_ns is None:
                self.first_ns = call.tracer.counter_ns()
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: runs for every chunk
            failed(f"stream of a provider {self.call.run_type} run", exc, _EFFECT)

    def finish(self, cancelled: bool) -> None:
        """End the run with the answer so far (``cancelled``: the stream was not read to
        its end)."""
        if self.done:
            return
        self.done = True
        try:
            answer = self.accumulator.answer()
        except Exception as exc:  # noqa: BLE001 - a partial answer that defeats the provider's mapping
            failed(f"stream of a provider {self.call.run_type} run", exc, "the run ends without output")
            answer = Answer(None, model=self.accumulator.model)
        metadata: dict[str, Any] = dict(_CANCELLED) if cancelled else {}
        if self.first_ns is not None:
            metadata["timeToFirstTokenMs"] = round((self.first_ns - self.call.started_ns) / 1e6, 2)
        self.call.end(answer, metadata or None)

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self.call.fail(error)

    def collected(self) -> None:
        """The stand-in was garbage-collected (run by its finalizer, on any thread)."""
        self.finish(cancelled=True)


def _watch(stand_in: object, run: StreamRun) -> None:
    finalizer = weakref.finalize(stand_in, run.collected)
    finalizer.atexit = False  # a stream still open at exit is not worth a late event


class _StandIn:
    """What both stand-ins share: the wrapped stream, its run, attribute passthrough."""

    __slots__ = ("__weakref__", "_lunatrace_run", "_lunatrace_stream")

    _lunatrace_stream: Any
    _lunatrace_run: StreamRun

    def __init__(self, stream: Any, run: StreamRun) -> None:
        object.__setattr__(self, "_lunatrace_stream", stream)
        object.__setattr__(self, "_lunatrace_run", run)
        _watch(self, run)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() checks against the client's stream type
        return type(self._lunatrace_stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lunatrace_stream, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._lunatrace_stream, name, value)

    def __repr__(self) -> str:
        return repr(self._lunatrace_stream)


class TracedStream(_StandIn):
    """A synchronous stream (``openai.Stream``, ``anthropic.Stream``) that ends its run."""

    __slots__ = ("_lunatrace_iterator",)

    _lunatrace_iterator: Iterator[Any] | None

    def __init__(self, stream: Any, run: StreamRun) -> None:
        super().__init__(stream, run)
        object.__setattr__(self, "_lunatrace_iterator", None)

    def __iter__(self) -> TracedStream:
        return self

    def __next__(self) -> Any:
        iterator = self._lunatrace_iterator
        if iterator is None:
            iterator = iter(self._lunatrace_stream)
            object.__setattr__(self, "_lunatrace_iterator", iterator)
        try:
            item = next(iterator)
        except StopIteration:
            self._lunatrace_run.finish(cancelled=False)
            raise
        except BaseException as exc:
            self._lunatrace_run.fail(exc)
            raise
        self._lunatrace_run.add(item)
        return item

    def __enter__(self) -> TracedStream:
        self._lunatrace_stream.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self._lunatrace_stream.__exit__(*exc_info)
        finally:
            self._lunatrace_run.finish(cancelled=True)

    def close(self) -> None:
        try:
            self._lunatrace_stream.close()
        finally:
            self._lunatrace_run.finish(cancelled=True)


class AsyncTracedStream(_StandIn):
    """An asynchronous stream (``openai.AsyncStream``, ``anthropic.AsyncStream``)."""

    __slots__ = ("_lunatrace_iterator",)

    _lunatrace_iterator: AsyncIterator[Any] | None

    def __init__(self, stream: Any, run: StreamRun) -> None:
        super().__init__(stream, run)
        object.__setattr__(self, "_lunatrace_iterator", None)

    def __aiter__(self) -> AsyncTracedStream:
        return self

    async def __anext__(self) -> Any:
        iterator = self._lunatrace_iterator
        if iterator is None:
            iterator = self._lunatrace_stream.__aiter__()
            object.__setattr__(self, "_lunatrace_iterator", iterator)
        try:
            item = await iterator.__anext__()  # type: ignore[union-attr]
        except StopAsyncIteration:
            self._lunatrace_run.finish(cancelled=False)
            raise
        except BaseException as exc:
            self._lunatrace_run.fail(exc)
            raise
        self._lunatrace_run.add(item)
        return item

    async def __aenter__(self) -> AsyncTracedStream:
        await self._lunatrace_stream.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self._lunatrace_stream.__aexit__(*exc_info)
        finally:
            self._lunatrace_run.finish(cancelled=True)

    async def close(self) -> None:
        try:
            await self._lunatrace_stream.close()
        finally:
            self._lunatrace_run.finish(cancelled=True)
