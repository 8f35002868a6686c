"""Shared helpers for the delivery tests: emit known traces, check none were lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lunatrace
from lunatrace.core.transport.store import EventStore
from tests.conftest import FAST_DELIVERY
from tests.support.fake_lunary import FakeLunary
from tests.support.trees import assert_valid_tree

Key = tuple[str, str]  # (runId, event)


def send_to(server: FakeLunary, store_path: Path, **overrides: Any) -> None:
    """Configure lunatrace for ``server`` with fast timings (``overrides`` win)."""
    settings: dict[str, Any] = {
        "project_key": server.key,
        "api_url": server.url,
        "store_path": store_path,
        **FAST_DELIVERY,
    }
    settings.update(overrides)
    lunatrace.configure(**settings)


def emit_traces(count: int, *, label: str = "t") -> list[Key]:
    """``count`` traces (chain -> llm, chain -> tool) through the tracer; their event keys."""
    tracer = lunatrace.get_tracer()
    keys: list[Key] = []
    for i in range(count):
        root = tracer.start_run("chain", f"{label}-{i}", {"i": i})
        llm = tracer.start_run("llm", "gpt-4o", [{"role": "user", "content": f"q{i}"}], parent_run_id=root)
        tracer.end_run(llm, {"role": "assistant", "content": "a"}, usage={"prompt": 3, "completion": 2})
        tool = tracer.start_run("tool", "search", {"q": i}, parent_run_id=root)
        tracer.end_run(tool, ["hit"])
        tracer.end_run(root, {"answer": i})
        keys += [(root, "start"), (llm, "start"), (llm, "end"), (tool, "start"), (tool, "end"), (root, "end")]
    return keys


def keys_of(events: list[dict[str, Any]]) -> list[Key]:
    return [(e["runId"], e["event"]) for e in events]


def spooled(store_path: Path) -> list[dict[str, Any]]:
    if not store_path.exists():
        return []
    return [event for _, event in EventStore(store_path).pending(1_000_000)]


def assert_none_lost(
    server: FakeLunary, store_path: Path, expected: list[Key], *, resent: bool = False
) -> None:
    """Every expected event is on the server or in the spool, exactly once (a retried
    request the server had already processed may store an ``end`` twice: ``resent``; the
    server may then also still be working on the abandoned request while the retry arrives)."""
    delivered = keys_of(server.events)
    kept = keys_of(spooled(store_path))
    if resent:
        delivered = list(dict.fromkeys(delivered))
    assert sorted(delivered + kept) == sorted(expected), (
        f"{len(delivered)} delivered + {len(kept)} kept != {len(expected)} expected"
    )
    assert not set(delivered) & set(kept), "an event is both delivered and kept"
    assert resent or server.max_in_flight <= 1


def assert_delivered_in_order(server: FakeLunary, expected: list[Key]) -> None:
    assert sorted(set(keys_of(server.events))) == sorted(expected)
    assert_valid_tree(server.events)
    assert server.orphans == [] and server.unmatched == []
    assert server.max_in_flight == 1
