"""Streams traced in place: the client's own stream object, with its items and its
``close`` observed.

The stream a traced method returns is the very object the client made, its type
untouched (``type(s) is openai.Stream``): a proxy would not do, since ``isinstance``
against a proxy depends on the client (anthropic's ``Stream`` has, in older releases,
0.60 among them, a metaclass whose ``__instancecheck__`` answers ``False`` for anything
but a real ``Stream``). Stainless-generated clients (openai, anthropic) read every item
of a stream through its ``_iterator`` attribute (``__iter__``, ``__next__``, the SDK's
own helpers over it) and release it with ``close()`` (also from ``__exit__``): both are
replaced on the instance by observers that report to the stream's
:class:`~.streams.StreamRun`. They hold the stream only weakly, so a dropped stream is
still freed at once, and its run ended, as without lunatrace.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from lunatrace.integrations.providers.streams import StreamRun


def _ended(run: StreamRun, exc: BaseException) -> None:
    """The stream stopped with ``exc``: its end (the whole answer), or its failure."""
    if isinstance(exc, StopIteration | StopAsyncIteration):
        run.finish(cancelled=False)
    else:
        run.fail(exc)


class _Items:
    """The stream's own iterator; each item goes to the run, and its end ends the run."""

    __slots__ = ("items", "run")

    def __init__(self, items: Iterator[Any], run: StreamRun) -> None:
        self.items = items
        self.run = run

    def __iter__(self) -> _Items:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self.items)
        except BaseException as exc:
            _ended(self.run, exc)
            raise
        self.run.add(item)
        return item


class _AsyncItems:
    __slots__ = ("items", "run")

    def __init__(self, items: AsyncIterator[Any], run: StreamRun) -> None:
        self.items = items
        self.run = run

    def __aiter__(self) -> _AsyncItems:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self.items.__anext__()
        except BaseException as exc:
            _ended(self.run, exc)
            raise
        self.run.add(item)
        return item


class _Close:
    """The stream's ``close``: the client's own, then the run ends (if not yet ended)."""

    __slots__ = ("close", "run", "stream")

    def __init__(self, stream: Any, run: StreamRun) -> None:
        self.stream = weakref.ref(stream)
        self.close: Callable[[Any], Any] = type(stream).close
        self.run = run

    def __call__(self) -> Any:
        try:
            stream = self.stream()
            return None if stream is None else self.close(stream)
        finally:
            self.run.finish(cancelled=True)


class _AsyncClose(_Close):
    __slots__ = ()

    async def __call__(self) -> Any:  # type: ignore[override]
        try:
            stream = self.stream()
            return None if stream is None else await self.close(stream)
        finally:
            self.run.finish(cancelled=True)


def _observe(stream: Any, run: StreamRun, items: Any, close: _Close) -> Any:
    stream._iterator = items
    stream.close = close
    finalizer = weakref.finalize(stream, run.collected)
    finalizer.atexit = False  # a stream still open at exit is not worth a late event
    return stream


def in_place(stream: Any, run: StreamRun) -> Any:
    """``stream`` (a synchronous Stainless stream) reporting to ``run``: a ``stand_in``
    for :func:`~.methods.traced`."""
    return _observe(stream, run, _Items(stream._iterator, run), _Close(stream, run))


def in_place_async(stream: Any, run: StreamRun) -> Any:
    """The same for an asynchronous stream: a ``stand_in`` for :func:`~.methods.traced_async`."""
    return _observe(stream, run, _AsyncItems(stream._iterator, run), _AsyncClose(stream, run))
