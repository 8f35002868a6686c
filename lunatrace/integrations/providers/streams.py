"""Streamed answers: what a stream's run collects, and how it ends.

``create(stream=True)`` returns the client's own stream object, observed in place
(:mod:`.inplace`): each item goes to the stream's :class:`StreamRun`, which hands it to
the provider's :class:`Accumulator` (cheap work: appending the chunk's pieces). The run
is started at the first item that reports the model (or carries output), named by that
model, and ended once: when the stream is exhausted (the whole answer), closed early or
garbage-collected unread (the partial answer, marked ``cancelled``), or fails mid-way
(the error). A stream that stays referenced and unread forever is closed by core's
sweep of abandoned runs.
"""

from __future__ import annotations

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
    """The run of one stream: what the observed stream reports to. Holds no reference to
    the stream, so that the stream's finalizer can end the run once it is collected."""

    __slots__ = ("accumulator", "call", "done", "first_ns")

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
        """The stream was garbage-collected (run by its finalizer, on any thread)."""
        self.finish(cancelled=True)
