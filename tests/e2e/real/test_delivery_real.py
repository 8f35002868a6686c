"""Delivery against the real server, at the edges real applications hit.

Each test here failed before its fix: a slow batch sent again while the server was still
writing it, metadata keys the server reads as run fields failing whole traces, string
ids dropped, a refused start's end counted as sent, a wrong ``api_url`` path reported as
a refused key.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

import lunatrace
from lunatrace.cli import main
from lunatrace.core.events import uuid_from_seed
from lunatrace.core.transport.store import EventStore
from lunatrace.integrations.langchain import CallbackHandler
from tests.support.real_lunary import REPO as ROOT
from tests.support.real_lunary import Project, RealLunary


def unique(prefix: str) -> str:
    """A string id no other test (or earlier run) used: run ids are unique across the server."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def requests_made() -> int:
    """Requests the process sent to the server: its lanes' and its spool's."""
    destination: Any = lunatrace.get_tracer().sink.destination  # type: ignore[attr-defined]
    return int(destination.main.requests + destination.lane.requests + destination.sender.requests)


@lunatrace.trace(type="tool")
def lookup(query: str) -> str:
    return f"found {query}"


def test_a_slow_batch_is_awaited_once_not_sent_again(
    real_lunary: RealLunary, real_project: Project, tmp_path: Path
) -> None:
    # Three runs under a parent the server does not have: it pauses 5 s for each before
    # answering (~15 s), longer than the 10 s default timeout.
    lunatrace.configure(
        project_key=real_project.key,
        api_url=real_lunary.url,
        store_path=tmp_path / "spool.db",
        flush_interval=0.05,
        http_timeout=10.0,
    )
    missing_parent = str(uuid.uuid4())
    with lunatrace.parent(missing_parent):
        for query in ("a", "b", "c"):
            lookup(query)
    started = time.monotonic()
    assert lunatrace.flush(60)
    took = time.monotonic() - started
    stats = lunatrace.stats()
    assert requests_made() == 1, "the slow batch was sent again while the server wrote it"
    assert (stats["sent"], stats["retried"], stats["spooled"], stats["failed"]) == (6, 0, 0, 0)
    assert 14 < took < 30
    runs = real_lunary.runs(real_project)
    assert sorted(r["input"]["query"] for r in runs) == ["a", "b", "c"]
    assert [(r["status"], r["parent_run_id"]) for r in runs] == [("success", None)] * 3


def test_a_slow_batch_holds_up_nothing_else_and_its_later_events_follow_it(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    @lunatrace.trace(type="agent", name="outer")
    def outer() -> str:
        time.sleep(0.3)  # the inner run starts in a later batch than this one
        return lookup("inner")

    with lunatrace.parent(str(uuid.uuid4())):  # unknown to the server: it pauses 5 s on `outer`
        outer()
    emitted = time.monotonic()
    lookup("unrelated")
    unrelated = real_lunary.wait_for_runs(
        traced_to_real, lambda rows: any(r["input"] == {"query": "unrelated"} for r in rows), timeout=10
    )
    assert time.monotonic() - emitted < 3, "an unrelated run waited behind the slow batch"
    assert [r["name"] for r in unrelated] == ["lookup"]  # `outer` is still being written
    assert lunatrace.flush(60)
    rows = real_lunary.runs(traced_to_real)
    runs = {"unrelated" if r["input"] == {"query": "unrelated"} else r["name"]: r for r in rows}
    assert sorted(runs) == ["lookup", "outer", "unrelated"]
    assert runs["outer"]["parent_run_id"] is None  # the missing parent: stored as a root
    assert runs["lookup"]["parent_run_id"] == runs["outer"]["id"]
    assert all(r["status"] == "success" for r in runs.values())
    stats = lunatrace.stats()
    assert (stats["sent"], stats["retried"], stats["spooled"], stats["failed"]) == (6, 0, 0, 0)


@pytest.mark.parametrize(
    "metadata",
    [{"tags": "urgent"}, {"template_id": "support-v2"}, {"templateVersionId": 12345}],
    ids=["tags", "template_id", "templateVersionId"],
)
def test_metadata_keys_the_server_reads_as_run_fields_fail_no_run(
    real_lunary: RealLunary, traced_to_real: Project, metadata: dict[str, Any]
) -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | FakeListChatModel(responses=["ok"])
    chain.invoke({"q": "hi"}, config={"callbacks": [CallbackHandler()], "metadata": metadata})

    @lunatrace.trace(type="agent", metadata=metadata)
    def decorated() -> str:
        return "done"

    decorated()
    assert lunatrace.flush(30)
    runs = real_lunary.runs(traced_to_real)
    assert len(runs) == 4  # the sequence, its prompt and model, and the decorated function
    assert all(r["status"] == "success" for r in runs)
    ((key, value),) = metadata.items()
    assert all(r["metadata"][f"metadata.{key}".replace("template_id", "templateId")] == value for r in runs)
    assert all(r["template_version_id"] is None and not r["tags"] for r in runs)
    assert lunatrace.stats()["failed"] == 0


def test_string_ids_for_threads_messages_parents_and_feedback(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    thread_id, asked, answered = unique("conv"), unique("msg"), unique("msg")
    thread = lunatrace.open_thread(thread_id, user_id="user-1")
    assert thread.track_message("user", "where is my order?", message_id=asked) == asked
    with lunatrace.parent(asked):
        lookup("order 42")
    thread.track_message("assistant", "it ships today", message_id=answered)
    assert lunatrace.feedback(answered, thumb="up", comment="quick")
    assert lunatrace.flush(30)
    runs = {r["id"]: r for r in real_lunary.runs(traced_to_real)}
    assert lunatrace.stats()["failed"] == 0
    thread_row = runs[uuid_from_seed(thread_id)]
    assert thread_row["type"] == "thread"
    exchange = runs[uuid_from_seed(answered)]  # the server renamed the exchange to its answer
    assert exchange["type"] == "chat" and exchange["parent_run_id"] == thread_row["id"]
    assert exchange["feedback"] == {"thumb": "up", "comment": "quick"}
    tool = next(r for r in runs.values() if r["type"] == "tool")
    assert tool["parent_run_id"] == exchange["id"] and tool["status"] == "success"


def test_message_ids_follow_the_servers_merge_of_an_exchange(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    thread = lunatrace.open_thread()
    first = thread.track_message("user", "hello")
    second = thread.track_message("user", "are you there?")  # appended to the same exchange
    started = time.monotonic()
    with lunatrace.parent(first):  # the server now knows this exchange as `second`
        lookup("presence")
    answer = thread.track_message("assistant", "yes")
    assert lunatrace.feedback(first, thumb="down")  # the user's question, after its answer
    assert lunatrace.flush(30)
    assert time.monotonic() - started < 4, "a run under a merged message waited as an orphan"
    runs = {r["id"]: r for r in real_lunary.runs(traced_to_real)}
    chats = [r for r in runs.values() if r["type"] == "chat"]
    assert [c["id"] for c in chats] == [answer]
    assert [m["content"] for m in chats[0]["input"]] == ["hello", "are you there?"]
    assert chats[0]["feedback"] == {"thumb": "down"}
    tool = next(r for r in runs.values() if r["type"] == "tool")
    assert tool["parent_run_id"] == answer
    assert second != answer


def test_a_failed_exchange_of_a_thread_handler_is_closed_on_its_own(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    calls = iter([ValueError("the model is down"), "the answer"])

    def respond(question: dict[str, str]) -> str:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    thread = lunatrace.open_thread()
    handler = CallbackHandler(thread=thread)
    with pytest.raises(ValueError):
        RunnableLambda(respond).invoke({"q": "first question"}, config={"callbacks": [handler]})
    RunnableLambda(respond).invoke({"q": "second question"}, config={"callbacks": [handler]})
    assert lunatrace.flush(30)
    chats = [r for r in real_lunary.runs(traced_to_real) if r["type"] == "chat"]
    assert [[m["content"] for m in c["input"]] for c in chats] == [["first question"], ["second question"]]
    assert chats[0]["output"] == [
        {"role": "assistant", "content": "ValueError: the model is down", "metadata": {"status": "error"}}
    ]
    assert chats[1]["output"] == [{"role": "assistant", "content": "the answer"}]


def test_an_end_whose_start_the_server_refused_is_not_counted_as_sent(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    tracer = lunatrace.get_tracer()
    run = tracer.start_run("chain", "linked", "x", template_version_id=987654321)  # no such version
    tracer.end_run(run, "y")
    assert lunatrace.flush(30)
    stats = lunatrace.stats()
    assert (stats["sent"], stats["failed"]) == (0, 2)
    assert real_lunary.runs(traced_to_real) == []


def test_a_wrong_api_url_path_is_reported_as_a_path_not_a_key(
    real_lunary: RealLunary, real_project: Project, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lunatrace.configure(
        project_key=real_project.key,
        api_url=real_lunary.url + "/api",
        store_path=tmp_path / "spool.db",
        flush_interval=0.05,
    )
    with caplog.at_level(logging.ERROR, logger="lunatrace"):
        lookup("x")
        assert lunatrace.flush(30)
    assert "check api_url" in caplog.text
    assert "was refused" not in caplog.text
    assert lunatrace.stats()["spooled"] == 2


SPOOL_ORPHANS = """
import sys, uuid
import lunatrace
lunatrace.configure(project_key=sys.argv[1], api_url="http://127.0.0.1:9", exit_timeout=1.0)
tracer = lunatrace.get_tracer()
with lunatrace.parent(str(uuid.uuid4())):  # a parent no server has: 5 s per run to store
    for i in range(2):
        tracer.end_run(tracer.start_run("tool", f"spooled-{i}", {"i": i}), "ok")
"""

RESEND_AND_HANG = """
import sys, time
import lunatrace
lunatrace.configure(project_key=sys.argv[1], api_url=sys.argv[2])
lunatrace.get_tracer().end_run(lunatrace.get_tracer().start_run("chain", "late", None), None)
time.sleep(120)
"""


def python(code: str, *args: str, wait: bool = True) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stderr=subprocess.PIPE)
    if wait:
        assert process.wait(60) == 0, process.stderr.read().decode() if process.stderr else ""
    return process


def test_a_process_killed_while_resending_leaves_no_lock_behind(
    real_lunary: RealLunary,
    real_project: Project,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = EventStore(Path(os.environ["LUNATRACE_STORE"]))
    python(SPOOL_ORPHANS, real_project.key)
    assert store.count_pending() == 4
    child = python(RESEND_AND_HANG, real_project.key, real_lunary.url, wait=False)
    try:
        deadline = time.monotonic() + 30
        while not store._query("SELECT owner FROM leases"):  # the child is re-sending the spool
            assert time.monotonic() < deadline and child.poll() is None, "the child never re-sent"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    monkeypatch.setenv("LUNARY_PUBLIC_KEY", real_project.key)
    monkeypatch.setenv("LUNARY_API_URL", real_lunary.url)
    assert main(["push"]) == 0, capsys.readouterr().err  # before: "another process is uploading"
    assert "Pushed" in capsys.readouterr().out
    assert store.count_pending() == 0
    # What the killed child had only queued ("late") died with it; the spool did not.
    assert sorted(r["name"] for r in real_lunary.runs(real_project)) == ["spooled-0", "spooled-1"]
