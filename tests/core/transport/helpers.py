"""Shared helpers for the delivery tests (and the commands' tests, which read what
delivery left): emit known traces, run traced programs, check none were lost."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import lunatrace
from lunatrace.core.transport.store import EventStore
from tests.conftest import FAST_DELIVERY
from tests.support.fake_lunary import FakeLunary
from tests.support.trees import assert_valid_tree

Key = tuple[str, str]  # (runId, event)

ROOT = Path(__file__).resolve().parents[3]

# A traced program: ``runs`` traces of a chain with an llm under it (4 events each).
PROGRAM = textwrap.dedent(
    """
    import sys
    import lunatrace

    runs = int(sys.argv[1])
    label = sys.argv[2] if len(sys.argv) > 2 else "job"
    tracer = lunatrace.get_tracer()
    for i in range(runs):
        root = tracer.start_run("chain", f"{label}-{i}", {"i": i}, user_id="ada", tags=["nightly"])
        llm = tracer.start_run("llm", "gpt-4o", [{"role": "user", "content": "hello"}], parent_run_id=root)
        tracer.end_run(llm, {"role": "assistant", "content": "hi"}, usage={"prompt": 5, "completion": 3})
        tracer.end_run(root, {"answer": i})
    """
)


def run_program(runs: int, env: dict[str, str], tmp_path: Path, label: str = "job") -> float:
    """Run :data:`PROGRAM` to completion (no flush() call); return its wall time."""
    script = tmp_path / "traced.py"
    script.write_text(PROGRAM)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), str(runs), label],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


def server_env(server: FakeLunary, **extra: str) -> dict[str, str]:
    """The environment pointing lunatrace at ``server``."""
    return {"LUNARY_PUBLIC_KEY": server.key, "LUNARY_API_URL": server.url, **extra}


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


def spool_with_a_damaged_row(path: Path, good: int) -> None:
    """A spool holding ``good`` events around one row whose body is not JSON."""
    store = EventStore(path)
    events = [
        {
            "type": "tool",
            "event": "start",
            "runId": f"0000000{i}-0000-4000-8000-000000000000",
            "timestamp": "2026-12-01T00:00:00.000Z",
            "name": f"kept-{i}",
        }
        for i in range(good)
    ]
    store.append(events[: good // 2], delivered=False)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO events (run_id, trace_id, state, body) VALUES ('x', 'x', 1, '{\"type\": \"to')"
        )
    store.append(events[good // 2 :], delivered=False)
    store.close()
