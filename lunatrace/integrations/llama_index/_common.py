"""What both LlamaIndex paths share: guarded conversions (now, or on the worker), one
stack per exception, and the watchdog that closes streams nobody finishes reading.

LlamaIndex swallows exceptions raised by instrumentation handlers without a word, and
lets those of legacy handlers reach the user's query; either way our handlers catch
everything themselves and report it through the guard (logged once per place, counted).
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lunatrace.api import get_tracer
from lunatrace.core import context
from lunatrace.core.guard import failed
from lunatrace.core.serialize import Deferred
from lunatrace.core.tracer import FROM_CONTEXT

DEFAULT_STREAM_TIMEOUT_S = 300.0
_THREAD_NAME = "lunatrace-llamaindex-streams"
_REPORTED_ATTR = "_lunatrace_error_reported"
_UNAFFECTED = "the application is unaffected, tracing continues"


def log_failure(where: str, exc: BaseException) -> None:
    """Report a failure of our own handler code at ``where`` (the guard's hot-path form:
    the hooks run inside every LlamaIndex call)."""
    failed(f"LlamaIndex {where}", exc, _UNAFFECTED)


def report_error(run_id: str, exc: BaseException) -> None:
    """End ``run_id`` as an error; only the first run to report ``exc`` carries its stack.

    One failure unwinds through every enclosing span (each one is dropped with the same
    exception object), so the innermost shown run gets message and stack and its
    ancestors the message only. The mark is an attribute on the exception, as
    LlamaIndex's own callback manager does (``event_added``), because exceptions cannot
    be weakly referenced.
    """
    tracer = get_tracer()
    if getattr(exc, _REPORTED_ATTR, False):
        tracer.error_run(run_id, error_message(exc))
        return
    tracer.error_run(run_id, exc)
    try:
        setattr(exc, _REPORTED_ATTR, True)
    except (AttributeError, TypeError):  # an exception type without __dict__: the stack repeats
        pass


def parent_run(framework_parent: str | None) -> Any:
    """The parent of a new LlamaIndex run whose nearest shown LlamaIndex ancestor is
    ``framework_parent`` (``None``: it is a LlamaIndex root).

    A root nests under whatever is current: a ``@lunatrace.trace`` function, a thread
    message, a LangChain tool (core asks every framework resolver). Below a LlamaIndex
    run, the LlamaIndex parent wins, unless a lunatrace run was opened inside it (a
    decorated function called by a tool, which then queries again). Asking core only in
    that case keeps other frameworks' resolvers, which cannot know they are outer, from
    claiming LlamaIndex's children. Returns ``FROM_CONTEXT`` for a root: the tracer
    resolves it (once) when the run starts.
    """
    if framework_parent is None:
        return FROM_CONTEXT
    enclosing = context.current_lunatrace_run_id()
    if enclosing is not None and context.current_run_id() == enclosing:
        return enclosing
    return framework_parent


def safely(where: str, convert: Callable[[Any], Any], value: Any) -> Any:
    """``convert(value)``, or ``None`` (reported) if the payload defeats the conversion."""
    try:
        return convert(value)
    except Exception as exc:  # noqa: BLE001 - the guard's hot-path form
        log_failure(where, exc)
        return None


def later(where: str, convert: Callable[[Any], Any], value: Any) -> Deferred:
    """:func:`safely` on the worker, when the field is encoded: for conversions that walk
    messages or build schemas (and so may run the application's ``__repr__``), which the
    hook must not do on the application's thread."""
    return Deferred(functools.partial(safely, where, convert), value)


def error_message(exc: BaseException) -> str:
    """An error event's message (``Type: text``), without formatting the stack again."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - the application's __str__ may raise anything: the type alone
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class StreamWatch:
    """Calls ``on_timeout`` for streams not finished within their deadline.

    One daemon thread, started when the first stream is watched and idle (exited) when
    none is left, so an application that never streams never gets the thread.
    Registering and cancelling are O(1) dictionary operations on the caller's thread.
    A callback that fails is reported and the others still run.
    """

    def __init__(self) -> None:
        self._items: dict[int, tuple[float, Callable[[], None]]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._next_key = 0
        self._waiting_until = 0.0

    def watch(self, timeout_s: float, on_timeout: Callable[[], None]) -> int:
        with self._lock:
            self._next_key += 1
            key = self._next_key
            deadline = time.monotonic() + timeout_s
            self._items[key] = (deadline, on_timeout)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=_THREAD_NAME, daemon=True)
                self._thread.start()
            elif deadline < self._waiting_until:
                self._wake.notify()
        return key

    def cancel(self, key: int) -> None:
        self._items.pop(key, None)

    @property
    def pending(self) -> int:
        return len(self._items)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._items:
                    self._thread = None
                    return
                now = time.monotonic()
                due = [k for k, (deadline, _) in self._items.items() if deadline <= now]
                expired = [self._items.pop(k)[1] for k in due]
                if not expired:
                    self._waiting_until = min(deadline for deadline, _ in self._items.values())
                    self._wake.wait(max(0.01, self._waiting_until - now))
                    continue
            for on_timeout in expired:
                try:
                    on_timeout()
                except Exception as exc:  # noqa: BLE001 - the guard's form: the loop serves the others
                    log_failure("stream timeout", exc)


@dataclass(slots=True, eq=False)
class Relay:
    """Runs whose answer streams out after they returned: ended when the stream is read."""

    anchor: Any  # what is made current while the stream is read (a span id, an event id)
    runs: list[Any] = field(default_factory=list)
    watch_key: int | None = None
    done: bool = False
    key: int | None = None  # its entry in ``StreamRelays._relays``


def _collect(parts: list[str], item: Any) -> None:
    """Keep the text of one streamed item: a token string, or a chat chunk's ``delta``."""
    if isinstance(item, str):
        parts.append(item)
        return
    delta = getattr(item, "delta", None)
    if isinstance(delta, str):
        parts.append(delta)


RelayDone = Callable[[Relay, "str | None", "BaseException | None"], None]


class StreamRelays:
    """Defers the end of query/chat runs whose result is a streaming response.

    LlamaIndex returns ``StreamingResponse`` at once and calls the LLM lazily, when the
    application iterates ``response_gen``, outside every span or event. The relay
    replaces ``response_gen`` with a transparent generator that makes ``anchor`` current
    (``activate``/``deactivate``) around each step, so the LLM run nests under the
    run that produced the stream, and calls ``on_done`` with the whole text at the end
    (or the exception; ``None`` text when the stream was abandoned past the timeout).
    """

    def __init__(
        self,
        watch: StreamWatch,
        activate: Callable[[Any], Any],
        deactivate: Callable[[Any], None],
        on_done: RelayDone,
    ) -> None:
        self._watch = watch
        self._activate = activate
        self._deactivate = deactivate
        self._on_done = on_done
        self._relays: dict[int, Relay] = {}

    def defer(
        self, result: Any, anchor: Any, run: Any, timeout_s: float, field: str = "response_gen"
    ) -> Relay | None:
        """Attach ``run`` to the stream of ``result``; ``None`` if ``result`` does not stream.

        The stream is the generator in the *field* ``field`` (``response_gen`` of
        ``StreamingResponse`` / ``AsyncStreamingResponse``), never a property of that name
        (``StreamingAgentChatResponse.response_gen`` reads a queue). The first run
        deferred on a stream gives the relay its ``anchor``.
        """
        try:
            gen: Any = vars(result).get(field)
        except TypeError:  # no __dict__: not a streaming response
            return None
        is_sync = inspect.isgenerator(gen)
        if not (is_sync or inspect.isasyncgen(gen)):
            return None
        relay = self._relays.get(id(gen))
        if relay is None:
            relay = Relay(anchor)
            wrapped = self._relay(gen, relay) if is_sync else self._arelay(gen, relay)
            try:
                setattr(result, field, wrapped)
            except (AttributeError, TypeError, ValueError):  # a frozen response: the caller ends the run now
                return None
            relay.key = id(wrapped)
            self._relays[relay.key] = relay
            relay.watch_key = self._watch.watch(timeout_s, lambda: self.finish(relay, None))
        relay.runs.append(run)
        return relay

    def _relay(self, gen: Iterator[Any], relay: Relay) -> Iterator[Any]:
        parts: list[str] = []
        try:
            while True:
                token = self._activate(relay.anchor)
                try:
                    item = next(gen)
                except StopIteration:
                    break
                finally:
                    self._deactivate(token)
                _collect(parts, item)
                yield item
        except GeneratorExit:
            close = getattr(gen, "close", None)
            if close is not None:
                close()
            self.finish(relay, "".join(parts))
            raise
        except BaseException as exc:
            self.finish(relay, None, exc)
            raise
        self.finish(relay, "".join(parts))

    async def _arelay(self, gen: AsyncIterator[Any], relay: Relay) -> AsyncIterator[Any]:
        parts: list[str] = []
        try:
            while True:
                token = self._activate(relay.anchor)
                try:
                    item = await gen.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    self._deactivate(token)
                _collect(parts, item)
                yield item
        except GeneratorExit:
            aclose = getattr(gen, "aclose", None)
            if aclose is not None:
                await aclose()
            self.finish(relay, "".join(parts))
            raise
        except BaseException as exc:
            self.finish(relay, None, exc)
            raise
        self.finish(relay, "".join(parts))

    def finish(self, relay: Relay, text: str | None, exc: BaseException | None = None) -> None:
        try:
            if relay.done:
                return
            relay.done = True
            if relay.watch_key is not None:
                self._watch.cancel(relay.watch_key)
            if relay.key is not None and self._relays.get(relay.key) is relay:
                del self._relays[relay.key]
            self._on_done(relay, text, exc)
        except Exception as failure:  # noqa: BLE001 - the guard's form: runs inside the application's iteration
            log_failure("streamed answer", failure)


def option_stream_timeout(options: dict[str, Any]) -> float:
    """Read the ``stream_timeout`` option (seconds, > 0); unknown options are an error."""
    unknown = set(options) - {"stream_timeout"}
    if unknown:
        raise TypeError(f"unknown LlamaIndex integration option(s): {', '.join(sorted(unknown))}")
    value = float(options.get("stream_timeout", DEFAULT_STREAM_TIMEOUT_S))
    if not value > 0:
        raise ValueError("stream_timeout must be a positive number of seconds")
    return value
