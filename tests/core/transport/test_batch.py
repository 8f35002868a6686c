"""Cutting events into batches bounded by count and by UTF-8 bytes of JSON."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from lunatrace.core.transport.batch import Item, batch_events, dumps, sized_batches, split_batches


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


def test_a_small_backlog_keeps_batches_small_and_a_large_one_takes_it_all() -> None:
    assert [batch_events(queued, 500) for queued in (0, 499, 500, 1_999)] == [500] * 4
    assert [batch_events(queued, 500) for queued in (2_000, 7_500, 100_000)] == [2_000, 7_500, 100_000]


def test_batches_grow_with_the_backlog_up_to_the_byte_cap() -> None:
    """The count is asked as each batch begins, with what is still queued then."""
    per_item = _item("a").size
    queue = deque(_item("a") for _ in range(3_000))

    def drained() -> Iterator[Item]:
        while queue:
            yield queue.popleft()

    # 3,000 queued: one batch takes as many as the byte cap lets it (1,200); 1,800 left are
    # still a backlog (1,200 more); the last 600 too (600 >= 4 x 100).
    batches = list(sized_batches(drained(), 100, per_item * 1_200, queue.__len__))
    assert [len(batch) for batch, _ in batches] == [1_200, 1_200, 600]
    assert all(size <= per_item * 1_200 for _, size in batches)
    # Under four batches' worth queued: batches of 100, for latency.
    queue.extend(_item("a") for _ in range(350))
    assert [len(batch) for batch, _ in sized_batches(drained(), 100, per_item * 1_200, queue.__len__)] == [
        100,
        100,
        100,
        50,
    ]
