"""Cutting events into batches bounded by count and by UTF-8 bytes of JSON."""

from __future__ import annotations

from lunatrace.core.transport.batch import Item, dumps, split_batches


def _item(text: str) -> Item:
    wire = {"type": "chain", "event": "start", "runId": "00000000-0000-4000-8000-000000000000", "input": text}
    return Item(wire=wire, body=dumps(wire))


def test_byte_cap_counts_utf8_bytes_not_characters() -> None:
    items = [_item("日本語" * 100) for _ in range(10)]  # 300 characters, 900 bytes of text each
    per_item = len(items[0].body.encode("utf-8")) + 1  # type: ignore[union-attr]
    assert items[0].size == per_item
    batches = list(split_batches(items, max_events=100, max_bytes=per_item * 3))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    for batch in batches:
        assert sum(len(i.body.encode("utf-8")) + 1 for i in batch) <= per_item * 3  # type: ignore[union-attr]


def test_count_cap_and_oversized_event_alone() -> None:
    small = [_item("a") for _ in range(5)]
    assert [len(b) for b in split_batches(small, max_events=2, max_bytes=10_000)] == [2, 2, 1]
    big = _item("x" * 5_000)
    batches = list(split_batches([small[0], big, small[1]], max_events=10, max_bytes=1_000))
    assert [len(b) for b in batches] == [1, 1, 1]
    assert batches[1][0] is big
