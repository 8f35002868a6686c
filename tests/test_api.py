"""The public functions: configure, flush, threads, parent(), current_run_id(), feedback."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

import lunatrace
from lunatrace import api
from lunatrace.core.events import uuid_from_seed
from lunatrace.core.transport import MemorySink
from lunatrace.core.transport.store import EventStore
from tests.support.fake_lunary import FakeLunary
from tests.support.trees import assert_valid_tree, by_name, end_of


@lunatrace.trace(name="answer", type="agent")
def answer(question: str) -> str:
    return f"echo: {question}"


def test_current_run_id_inside_and_outside(memory_sink: MemorySink) -> None:
    seen: list[str | None] = []

    @lunatrace.trace(name="outer")
    def outer() -> None:
        seen.append(lunatrace.current_run_id())
        inner()
        seen.append(lunatrace.current_run_id())

    @lunatrace.trace(name="inner")
    def inner() -> None:
        seen.append(lunatrace.current_run_id())

    assert lunatrace.current_run_id() is None
    outer()
    assert lunatrace.current_run_id() is None
    outer_id = by_name(memory_sink.events, "outer")[0]["runId"]
    inner_id = by_name(memory_sink.events, "inner")[0]["runId"]
    assert seen == [outer_id, inner_id, outer_id]


def test_thread_messages_parent_the_work_they_trigger(memory_sink: MemorySink) -> None:
    thread = lunatrace.open_thread(tags=["support"], user_id="u-1")
    question = thread.track_message("user", "where is my parcel?")
    with lunatrace.parent(question) as parent_id:
        assert parent_id == question
        reply = answer("where is my parcel?")
    thread.track_message("assistant", reply)
    events = memory_sink.events
    assert [e["event"] for e in events] == ["chat", "start", "end", "chat"]
    assert events[0]["runId"] == question  # the id returned is the message's own
    run = by_name(events, "answer")[0]
    assert run["parentRunId"] == question
    assert {e["parentRunId"] for e in events if e["event"] == "chat"} == {thread.id}
    assert [(e["threadTags"], e["userId"]) for e in events if e["event"] == "chat"] == [
        (["support"], "u-1"),
        (["support"], "u-1"),
    ]
    assert [e["message"]["role"] for e in events if e["event"] == "chat"] == ["user", "assistant"]
    assert_valid_tree(events, allow_parents=[question])


def test_continuing_a_thread_from_another_process(memory_sink: MemorySink) -> None:
    thread_id = str(uuid.uuid4())
    earlier_message = str(uuid.uuid4())  # tracked by another worker process
    with lunatrace.parent(earlier_message):
        answer("follow-up")
    assert by_name(memory_sink.events, "answer")[0]["parentRunId"] == earlier_message
    mid = lunatrace.open_thread(thread_id).track_message("assistant", "done", message_id=earlier_message)
    assert mid == earlier_message
    message = memory_sink.events[-1]
    assert (message["event"], message["runId"]) == ("chat", earlier_message)
    assert message["parentRunId"] == thread_id


def test_a_string_parent_id_names_the_run_the_server_keeps_for_it(memory_sink: MemorySink) -> None:
    # The server hashes any id that is not 36 characters long into a UUID (SHA-256):
    # lunatrace sends that UUID itself, so the store and the server agree.
    with lunatrace.parent("order-42") as scope:
        answer("x")
    start = by_name(memory_sink.events, "answer")[0]
    assert start["parentRunId"] == scope == uuid_from_seed("order-42")


def test_an_empty_parent_id_is_ignored(memory_sink: MemorySink, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lunatrace"), lunatrace.parent(""):
        answer("x")
    assert "parentRunId" not in by_name(memory_sink.events, "answer")[0]
    assert "not a run id" in caplog.text


def test_feedback_after_the_run(memory_sink: MemorySink) -> None:
    @lunatrace.trace(name="rated", type="agent")
    def rated() -> str | None:
        return lunatrace.current_run_id()

    rid = rated()
    assert rid is not None
    assert lunatrace.feedback(rid, thumb="down", comment="wrong", source="widget")
    event = memory_sink.events[-1]
    assert event["event"] == "feedback" and event["type"] == "agent" and event["runId"] == rid
    assert event["feedback"] == {"thumb": "down", "comment": "wrong", "source": "widget"}


def test_configure_returns_the_config_and_replaces_the_tracer(tmp_path: Path) -> None:
    first = lunatrace.get_tracer()
    config = lunatrace.configure(store_path=tmp_path / "a.db", sample_rate=0.5)
    assert config.store_path == tmp_path / "a.db" and config.sample_rate == 0.5
    assert lunatrace.get_tracer() is not first
    assert lunatrace.get_tracer().config == config


def test_get_tracer_reads_the_environment_lazily(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LUNATRACE_SAMPLE_RATE", "0.3")
    monkeypatch.setenv("LUNATRACE_STORE", str(tmp_path / "env.db"))
    tracer = lunatrace.get_tracer()
    assert tracer.config.sample_rate == 0.3
    assert tracer.config.store_path == tmp_path / "env.db"
    assert lunatrace.get_tracer() is tracer


def test_flush_delivers_and_shutdown_stops(traced_to_server: FakeLunary) -> None:
    answer("q1")
    assert lunatrace.flush(timeout=10) is True
    assert [e["event"] for e in traced_to_server.events] == ["start", "end"]
    end = end_of(traced_to_server.events, traced_to_server.events[0]["runId"])
    assert end["output"] == "echo: q1"
    assert lunatrace.shutdown(timeout=5) is True
    assert api._tracer is None
    assert lunatrace.shutdown() is True  # twice is harmless


def test_everything_is_exported() -> None:
    public = {
        "configure",
        "flush",
        "shutdown",
        "stats",
        "get_tracer",
        "project",
        "trace",
        "identify",
        "tags",
        "metadata",
        "monitor",
        "unmonitor",
        "current_run_id",
        "feedback",
        "open_thread",
        "parent",
        "show",
        "Thread",
        "Config",
        "ConfigError",
        "Ignore",
        "__version__",
    }
    assert set(lunatrace.__all__) == public
    namespace: dict[str, object] = {}
    exec("from lunatrace import *", namespace)  # what an application's star import gets
    assert public <= set(namespace)
    assert namespace["configure"] is api.configure and namespace["Thread"] is api.Thread


def test_a_bad_server_url_sends_nothing_anywhere_and_keeps_events_locally(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A self-hosted server's address without its scheme: falling back to the default URL
    # would send the prompts (and the key) to Lunary's cloud.
    monkeypatch.setenv("LUNARY_PUBLIC_KEY", str(uuid.uuid4()))
    monkeypatch.setenv("LUNARY_API_URL", "lunary.internal.corp:3333")
    with caplog.at_level(logging.ERROR, logger="lunatrace"):
        config = lunatrace.get_tracer().config
    assert not config.uses_server
    assert "NOTHING IS SENT" in caplog.text and "LUNARY_API_URL" in caplog.text
    answer("kept")
    assert lunatrace.flush(10)
    stats = lunatrace.stats()
    assert (stats["stored"], stats["sent"]) == (2, 0)


def test_a_run_open_across_configure_ends_under_the_new_configuration(tmp_path: Path) -> None:
    store = tmp_path / "events.db"
    lunatrace.configure(store_path=store)

    @lunatrace.trace(name="spans", type="agent")
    def spans() -> str:
        lunatrace.configure(store_path=store, flush_interval=0.1)  # e.g. a settings reload
        return "done"

    spans()
    assert lunatrace.flush(10)
    assert lunatrace.stats()["stored"] == 1  # the end, counted by the tracer now in force
    (summary,) = EventStore(store).list_traces()
    assert (summary.name, summary.status) == ("spans", "success")


def test_monitor_dispatches_by_the_clients_module_and_refuses_anything_else() -> None:
    import openai

    from lunatrace.integrations.providers import is_monitored

    client = openai.OpenAI(api_key="sk-example", base_url="http://127.0.0.1:9/v1")
    assert lunatrace.monitor(client) is client and is_monitored(client)
    assert lunatrace.unmonitor(client) is client and not is_monitored(client)
    for other in (object(), "a client", openai):
        with pytest.raises(TypeError, match="provider client"):
            lunatrace.monitor(other)
