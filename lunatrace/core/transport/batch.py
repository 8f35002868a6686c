"""An event on its way out, and cutting a run of events into bounded batches."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from lunatrace.core.events import Header, RawEvent, wire_event
from lunatrace.core.serialize import FieldEncoder, dumps


class Item:
    """One event: the raw event from the caller, then its JSON once encoded.

    ``row`` is the store row id for events read back from the store. ``wire`` (the
    event as a dict) is parsed from the JSON only when asked for, by the store: sending
    needs the text alone. ``header`` (``(run type, event name, run id, parent id)``,
    which delivery orders events by) and ``size`` (the bytes the event adds to a request
    body, UTF-8, with its separator) are plain attributes, set with the JSON: delivery
    reads them several times for every event.
    """

    __slots__ = ("_wire", "body", "header", "kept", "raw", "row", "size")

    def __init__(
        self,
        raw: RawEvent | None = None,
        wire: dict[str, Any] | None = None,
        body: str | None = None,
        row: int | None = None,
    ) -> None:
        self.raw = raw
        self._wire = wire
        self.row = row
        self.kept = False  # written to the store (see ``Spool.write``)
        self.body: str | None = None
        self.header: Header | None = None
        self.size = 1
        if body is not None:
            self._written(body, event_header(body))

    @classmethod
    def stored(cls, row: int, wire: dict[str, Any]) -> Item:
        return cls(wire=wire, body=dumps(wire), row=row)

    def _written(self, body: str, header: Header | None) -> None:
        self.body = body
        self.header = header
        self.size = (len(body) if body.isascii() else len(body.encode("utf-8"))) + 1

    @property
    def wire(self) -> dict[str, Any] | None:
        if self._wire is None and self.body is not None:
            self._wire = json.loads(self.body)
        return self._wire

    def encode(self, encoder: FieldEncoder) -> None:
        """Fill ``body`` from ``raw``; raises ``EventError`` for a bad event."""
        if self.body is None and self.raw is not None:
            event = wire_event(self.raw, encoder)
            if event is not None:
                self._written(*event)
            # The raw event holds the application's objects (messages, results): free them
            # now rather than when the batch is delivered, so the collector sees less.
            self.raw = None


# Every event's JSON starts with its type, event name, run id and (if any) parent id, in
# this order: ``events.wire_json`` writes them first, and stored events keep their order.
_HEADER = re.compile(r'\{"type":"([^"]*)","event":"([^"]*)","runId":"([^"]*)"(?:,"parentRunId":"([^"]*)")?')


def event_header(body: str) -> Header | None:
    """``(run type, event name, run id, parent id)`` of an event's JSON, from its first bytes."""
    match = _HEADER.match(body)
    if match is None:
        return None
    run_type, event, run_id, parent = match.groups()
    return run_type, event, run_id, parent


# A backlog: this many batches' worth of events queued as a batch begins. Below it,
# batches keep ``batch_max_events`` for latency; from it on, one batch takes them all.
BACKLOG_BATCHES = 4


def batch_events(queued: int, max_events: int) -> int:
    """The most events the next batch takes, with ``queued`` events waiting as it begins.

    ``max_events`` while the queue holds less than :data:`BACKLOG_BATCHES` batches' worth:
    a steady trickle goes out in small batches, soon after it is emitted. With a backlog,
    every queued event: only one request is in flight at a time (the server orders events
    only within a request), so at a round trip of 100 ms, batches of 500 carry at most
    5,000 events a second; growing them, up to the byte cap (which still cuts every batch),
    is the only way to keep up with a faster producer without dropping its events.
    """
    return queued if queued >= BACKLOG_BATCHES * max_events else max_events


def split_batches(items: Iterable[Item], max_events: int, max_bytes: int) -> Iterator[list[Item]]:
    """Consecutive batches of at most ``max_events`` events and ``max_bytes`` of JSON
    (a single larger event goes alone)."""
    for batch, _ in sized_batches(items, max_events, max_bytes):
        yield batch


def sized_batches(
    items: Iterable[Item], max_events: int, max_bytes: int, waiting: Callable[[], int] | None = None
) -> Iterator[tuple[list[Item], int]]:
    """:func:`split_batches`, each batch with its size in bytes. A batch is yielded as soon
    as the next item does not fit in it, so ``items`` may be produced (encoded) while the
    batches before are sent. ``waiting``: how many items are still to come (the worker's
    queue), asked as each batch begins, which then takes up to
    :func:`batch_events` of them instead of ``max_events``."""
    batch: list[Item] = []
    size = 0
    cap = max_events
    for item in items:
        item_size = item.size
        if batch and (len(batch) >= cap or size + item_size > max_bytes):
            yield batch, size
            batch, size = [], 0
        if not batch and waiting is not None:
            cap = batch_events(1 + waiting(), max_events)  # this item, and those behind it
        batch.append(item)
        size += item_size
    if batch:
        yield batch, size


def as_pairs(items: Sequence[Item]) -> list[tuple[dict[str, Any], str]]:
    """``(wire, json)`` pairs for the store (encoded items only)."""
    return [(wire, item.body) for item in items if item.body is not None and (wire := item.wire) is not None]
