"""An event on its way out, and cutting a run of events into bounded batches."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from lunatrace.core.events import RawEvent, wire_json
from lunatrace.core.serialize import FieldEncoder, dumps


class Item:
    """One event: the raw event from the caller, then its JSON once encoded.

    ``row`` is the store row id for events read back from the store. ``wire`` (the
    event as a dict) is parsed from the JSON only when asked for, by the store: sending
    needs the text alone.
    """

    __slots__ = ("_header", "_wire", "body", "kept", "raw", "row")

    def __init__(
        self,
        raw: RawEvent | None = None,
        wire: dict[str, Any] | None = None,
        body: str | None = None,
        row: int | None = None,
    ) -> None:
        self.raw = raw
        self._wire = wire
        self.body = body
        self.row = row
        self._header: tuple[str, str, str, str | None] | None = None
        self.kept = False  # written to the store (see ``Spool.write``)

    @classmethod
    def stored(cls, row: int, wire: dict[str, Any]) -> Item:
        return cls(wire=wire, body=dumps(wire), row=row)

    @property
    def header(self) -> tuple[str, str, str, str | None] | None:
        """``(run type, event name, run id, parent id)``, read once from the JSON's start."""
        if self._header is None and self.body is not None:
            self._header = event_header(self.body)
        return self._header

    @property
    def wire(self) -> dict[str, Any] | None:
        if self._wire is None and self.body is not None:
            self._wire = json.loads(self.body)
        return self._wire

    def encode(self, encoder: FieldEncoder) -> None:
        """Fill ``body`` from ``raw``; raises ``EventError`` for a bad event."""
        if self.body is None and self.raw is not None:
            self.body = wire_json(self.raw, encoder)
            # The raw event holds the application's objects (messages, results): free them
            # now rather than when the batch is delivered, so the collector sees less.
            self.raw = None

    @property
    def size(self) -> int:
        """Bytes this event adds to a request body (UTF-8, plus its separator)."""
        body = self.body or ""
        return (len(body) if body.isascii() else len(body.encode("utf-8"))) + 1


# Every event's JSON starts with its type, event name, run id and (if any) parent id, in
# this order: ``events.wire_json`` writes them first, and stored events keep their order.
_HEADER = re.compile(r'\{"type":"([^"]*)","event":"([^"]*)","runId":"([^"]*)"(?:,"parentRunId":"([^"]*)")?')


def event_header(body: str) -> tuple[str, str, str, str | None] | None:
    """``(run type, event name, run id, parent id)`` of an event's JSON, from its first bytes."""
    match = _HEADER.match(body)
    if match is None:
        return None
    run_type, event, run_id, parent = match.groups()
    return run_type, event, run_id, parent


def split_batches(items: Iterable[Item], max_events: int, max_bytes: int) -> Iterator[list[Item]]:
    """Consecutive batches of at most ``max_events`` events and ``max_bytes`` of JSON
    (a single larger event goes alone)."""
    for batch, _ in sized_batches(items, max_events, max_bytes):
        yield batch


def sized_batches(items: Iterable[Item], max_events: int, max_bytes: int) -> Iterator[tuple[list[Item], int]]:
    """:func:`split_batches`, each batch with its size in bytes. A batch is yielded as soon
    as the next item does not fit in it, so ``items`` may be produced (encoded) while the
    batches before are sent."""
    batch: list[Item] = []
    size = 0
    for item in items:
        item_size = item.size
        if batch and (len(batch) >= max_events or size + item_size > max_bytes):
            yield batch, size
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch, size


def as_pairs(items: Sequence[Item]) -> list[tuple[dict[str, Any], str]]:
    """``(wire, json)`` pairs for the store (encoded items only)."""
    return [(wire, item.body) for item in items if item.body is not None and (wire := item.wire) is not None]
