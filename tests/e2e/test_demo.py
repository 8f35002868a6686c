"""``lunatrace demo`` as a user runs it: the real command, offline, then against a server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from lunatrace.core.transport.store import EventStore
from tests.support.fake_lunary import FakeLunary
from tests.support.trees import assert_valid_tree, by_name

DEMO_TRACES = ["travel_agent", "support_graph", "RetrieverQueryEngine", "thread"]


def run_demo(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "lunatrace.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    return result, time.monotonic() - started


def test_demo_runs_offline_into_the_store_and_prints_trees(tmp_path: Path) -> None:
    store_path = tmp_path / "demo.db"
    result, elapsed = run_demo({**os.environ, "LUNATRACE_STORE": str(store_path)})

    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < 60
    out = result.stdout
    assert f"offline: no Lunary key set, events are kept in {store_path}" in out
    for part in (
        "[1/4] LangChain agent",
        "[2/4] LangGraph graph",
        "[3/4] LlamaIndex RAG",
        "[4/4] A two-message",
    ):
        assert part in out
    for line in (
        "└─ agent travel_agent  ✓ success",
        "tool get_weather  ✓ success",
        "tool get_local_time  ✓ success",
        "└─ chain support_graph  ✓ success",
        "llm demo-gpt-mini  ✓ success",
        "└─ chain RetrieverQueryEngine  ✓ success",
        "retriever VectorIndexRetriever  ✓ success",
        "llm demo-llm  ✓ success",
        "└─ thread thread  ✓ success",
        "chat user: Can you recommend a book about the sea?",
        "agent book_recommender  ✓ success",
        'feedback {"thumb": "up", "comment": "Great pick!"}',
    ):
        assert line in out, line
    assert "lunatrace ui" in out and "lunatrace show" in out and "notebooks/" in out
    assert "5 traces recorded by 4 steps (building the LlamaIndex index is a trace of its own)" in out
    assert "answer: Because the Moon's gravity pulls the oceans into two bulges" in out
    assert "text text" not in out and " 1 runs" not in out and " 1 llm calls" not in out
    assert "lunatrace push" in out
    assert "✗" not in out and "Traceback" not in result.stderr

    store = EventStore(store_path)
    try:
        names = [s.name for s in store.list_traces(limit=50)]
        for name in DEMO_TRACES:
            assert name in names
        assert all(s.status == "success" for s in store.list_traces(limit=50))
        agent = next(s for s in store.list_traces(limit=50) if s.name == "travel_agent")
        assert agent.llm_calls == 2 and agent.tokens > 0
        assert f"lunatrace show {agent.trace_id}\n" in out  # a command that works, with a real id
        assert_valid_tree(store.trace_events(agent.trace_id))
    finally:
        store.close()
    shown = subprocess.run(
        [sys.executable, "-m", "lunatrace.cli", "show", agent.trace_id],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LUNATRACE_STORE": str(store_path)},
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1].startswith("└─ agent travel_agent  ✓ success")


def test_demo_with_a_key_sends_everything_to_the_server(lunary_server: FakeLunary, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "LUNATRACE_STORE": str(tmp_path / "demo.db"),
        "LUNARY_PUBLIC_KEY": lunary_server.key,
        "LUNARY_API_URL": lunary_server.url,
    }
    result, _ = run_demo(env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"sending to the Lunary server at {lunary_server.url}" in result.stdout
    assert "└─ agent travel_agent  ✓ success" in result.stdout
    assert "your Lunary dashboard" in result.stdout
    events = lunary_server.events
    assert not lunary_server.rejected and not lunary_server.unmatched
    # the work for a thread message starts under the message's own (chat) run: no orphan
    (recommender,) = by_name(events, "book_recommender")
    assert lunary_server.orphans == []
    runs = [e for e in events if e["event"] in ("start", "end", "error")]
    assert_valid_tree(runs, allow_parents=[e["runId"] for e in events if e["event"] == "chat"])
    for name in ("travel_agent", "get_weather", "get_local_time", "support_graph", "RetrieverQueryEngine"):
        assert by_name(events, name), name
    messages = [e for e in events if e["event"] == "chat"]
    assert [m["message"]["role"] for m in messages] == ["user", "assistant"]
    assert recommender["parentRunId"] == messages[0]["runId"]
    # the server merges the exchange into one chat run, which takes the assistant message's id
    exchange, work = lunary_server.run(messages[1]["runId"]), lunary_server.run(recommender["runId"])
    assert exchange is not None and work is not None
    assert exchange["type"] == "chat" and work["parent_run_id"] == exchange["id"]
    (feedback,) = [e for e in events if e["event"] == "feedback"]
    assert feedback["runId"] == messages[1]["runId"]  # the answer, which names the exchange
    assert exchange["feedback"] == {"thumb": "up", "comment": "Great pick!"}


def test_demo_with_an_unusable_store_shows_what_it_traced_and_fails(tmp_path: Path) -> None:
    """A store that cannot be opened (here its folder is a file) loses the events with a
    counted message; the demo still shows every trace, from what it traced, says the store
    did not keep it, and exits 1 instead of ending in a traceback."""
    (tmp_path / "not-a-folder").write_text("x")
    store_path = tmp_path / "not-a-folder" / "events.db"
    result, _ = run_demo({**os.environ, "LUNATRACE_STORE": str(store_path)})

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "dropped_store_unusable" in result.stderr
    assert result.stdout.count(f"not kept in {store_path} (see above why); shown as traced:") == 4
    roots = ("agent travel_agent", "chain support_graph", "chain RetrieverQueryEngine", "thread thread")
    for root in roots:
        assert f"└─ {root}" in result.stdout, root
