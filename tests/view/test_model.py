"""Assembling wire events into a run tree, including the incomplete and disordered cases."""

from __future__ import annotations

import random
from typing import Any

import lunatrace
from lunatrace.core.timestamps import parse_timestamp
from lunatrace.core.transport import MemorySink
from lunatrace.view.model import ERROR, STARTED, SUCCESS, build_trace, format_duration


def test_agent_trace_tree_mirrors_the_runs(agent_events: list[dict[str, Any]]) -> None:
    trace = build_trace(agent_events)

    assert len(trace.roots) == 1
    root = trace.root
    assert root is not None
    assert (root.type, root.name, root.status) == ("agent", "weather-agent", SUCCESS)
    assert trace.id == root.id == agent_events[0]["runId"]
    assert [(c.type, c.name, c.status) for c in root.children] == [
        ("llm", "gpt-4o-mini", SUCCESS),
        ("tool", "lookup", SUCCESS),
        ("tool", "lookup", ERROR),
    ]
    llm, ok_tool, failed_tool = root.children
    assert llm.parent_id == root.id
    assert llm.model == "gpt-4o-mini"
    assert llm.tokens == {"prompt": 12, "completion": 5}
    assert llm.total_tokens == 17
    assert llm.params == {"temperature": 0}
    assert llm.input == [{"role": "user", "content": "Weather in Paris?"}]
    assert llm.output["tool_calls"][0]["function"]["name"] == "lookup"
    assert ok_tool.input == {"city": "Paris"}
    assert ok_tool.output == {"city": "Paris", "temp": 21}
    assert failed_tool.error is not None
    assert failed_tool.error["message"] == "LookupError: no weather for Atlantis"
    assert "Traceback" in failed_tool.error["stack"]
    assert root.tags == ["demo"]
    assert root.user_id == "user-7"
    assert root.user_props == {"plan": "pro"}
    assert root.output == "21 degrees in Paris"


def test_trace_totals_and_timing(agent_events: list[dict[str, Any]]) -> None:
    trace = build_trace(agent_events)
    root = trace.root
    assert root is not None

    assert trace.llm_calls == 1
    assert trace.errors == 1
    assert trace.tokens == {"prompt": 12, "completion": 5}
    assert trace.user_id == "user-7"
    assert trace.status == SUCCESS
    assert trace.start_ms == parse_timestamp(agent_events[0]["timestamp"])
    assert trace.end_ms == parse_timestamp(agent_events[-1]["timestamp"])
    assert root.duration_ms == trace.duration_ms
    for run, _ in trace.walk():
        assert run.start_ms is not None and run.end_ms is not None
        assert run.start_ms <= run.end_ms
        offset, width = trace.timeline(run)
        assert 0.0 <= offset <= 1.0 and 0.0 <= width <= 1.0 - offset


def _event(kind: str, rid: str, ms: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": "chain",
        "event": kind,
        "runId": rid,
        "timestamp": f"2026-01-01T00:00:{ms // 1000:02d}.{ms % 1000:03d}Z",
        **fields,
    }


def test_timeline_fractions_against_the_whole_trace() -> None:
    events = [
        _event("start", "root", 0, name="root"),
        _event("start", "a", 250, name="a", parentRunId="root"),
        _event("end", "a", 750),
        _event("end", "root", 1000),
    ]
    trace = build_trace(events)
    assert trace.duration_ms == 1000
    assert trace.timeline(trace.runs["root"]) == (0.0, 1.0)
    assert trace.timeline(trace.runs["a"]) == (0.25, 0.5)
    assert trace.runs["a"].duration_ms == 500


def test_event_order_does_not_matter(agent_events: list[dict[str, Any]]) -> None:
    """Shuffled events give the same tree (siblings started in the same millisecond may swap)."""
    expected = build_trace(agent_events)
    shuffled = list(agent_events)
    random.Random(7).shuffle(shuffled)
    trace = build_trace(shuffled)

    def shape(t: Any) -> list[tuple[str, str, str, str, int]]:
        return sorted((r.parent_id or "", r.id, r.type, r.status, r.duration_ms or 0) for r, _ in t.walk())

    assert shape(trace) == shape(expected)
    assert len(trace.runs) == 4


def test_run_without_end_is_started_and_spans_to_trace_end() -> None:
    events = [
        _event("start", "root", 0, name="pipeline"),
        _event("start", "fetch", 100, name="fetch", parentRunId="root", type="retriever"),
        _event("start", "later", 200, name="later", parentRunId="root"),
        _event("end", "later", 400),
    ]
    trace = build_trace(events)

    assert trace.status == STARTED
    fetched = trace.runs["fetch"]
    assert fetched.status == STARTED
    assert fetched.type == "retriever"
    assert fetched.duration_ms is None
    assert trace.timeline(fetched) == (0.25, 0.75)


def test_open_runs_recorded_by_the_tracer_are_started(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    root = tracer.start_run("chain", "pipeline")
    child = tracer.start_run("retriever", "fetch", parent_run_id=root)
    trace = build_trace(memory_sink.events)
    assert trace.status == STARTED
    assert [c.id for c in trace.runs[root].children] == [child]
    assert trace.runs[child].status == STARTED


def test_missing_start_becomes_a_placeholder_root() -> None:
    events = [
        {
            "type": "llm",
            "event": "end",
            "runId": "11111111-1111-4111-8111-111111111111",
            "timestamp": "2026-01-01T00:00:01.000Z",
            "output": "late",
        },
    ]
    trace = build_trace(events)
    run = trace.runs["11111111-1111-4111-8111-111111111111"]
    assert run.has_start is False
    assert run.status == SUCCESS
    assert run.name == "(llm 11111111)"
    assert trace.roots == [run]
    assert run.output == "late"


def test_unknown_parent_and_cycles_become_roots() -> None:
    a, b, c = (f"{n}" * 8 + "-0000-4000-8000-000000000000" for n in "abc")
    events = [
        {
            "type": "chain",
            "event": "start",
            "runId": a,
            "parentRunId": b,
            "name": "A",
            "timestamp": "2026-01-01T00:00:00.000Z",
        },
        {
            "type": "chain",
            "event": "start",
            "runId": b,
            "parentRunId": a,
            "name": "B",
            "timestamp": "2026-01-01T00:00:00.001Z",
        },
        {
            "type": "chain",
            "event": "start",
            "runId": c,
            "parentRunId": "missing",
            "name": "C",
            "timestamp": "2026-01-01T00:00:00.002Z",
        },
    ]
    trace = build_trace(events)
    assert sorted(r.name for r in trace.roots) == ["A", "B", "C"]
    assert sum(1 for _ in trace.walk()) == 3


def test_runs_below_a_cycle_are_roots_and_the_rest_of_the_chain_is_kept() -> None:
    # self -> self; x -> y -> z -> y (z, y loop; x hangs below them); p -> q -> (nothing)
    parents = {"self": "self", "x": "y", "y": "z", "z": "y", "p": "q", "q": None, "r": "p"}
    events = [
        _event("start", rid, index, name=rid, parentRunId=parent)
        for index, (rid, parent) in enumerate(parents.items())
    ]
    trace = build_trace(events)
    assert sorted(r.name for r in trace.roots) == ["q", "self", "x", "y", "z"]
    assert [(r.name, depth) for r, depth in trace.runs["q"].walk()] == [("q", 0), ("p", 1), ("r", 2)]
    assert all(not trace.runs[rid].children for rid in ("self", "x", "y", "z"))


def test_garbage_events_are_ignored() -> None:
    events: list[Any] = [
        None,
        "x",
        {},
        {"event": "start"},
        {"runId": "r", "timestamp": "not a time", "event": "start"},
    ]
    trace = build_trace(events)
    assert list(trace.runs) == ["r"]
    assert trace.runs["r"].start_ms is None
    assert trace.duration_ms is None
    assert trace.timeline(trace.runs["r"]) == (0.0, 0.0)


def test_error_wins_over_a_later_end() -> None:
    rid = "22222222-2222-4222-8222-222222222222"
    events = [
        {
            "type": "tool",
            "event": "start",
            "runId": rid,
            "name": "t",
            "timestamp": "2026-01-01T00:00:00.000Z",
        },
        {
            "type": "tool",
            "event": "error",
            "runId": rid,
            "timestamp": "2026-01-01T00:00:00.005Z",
            "error": {"message": "bad"},
        },
        {"type": "tool", "event": "end", "runId": rid, "timestamp": "2026-01-01T00:00:00.009Z"},
    ]
    run = build_trace(events).runs[rid]
    assert run.status == ERROR
    assert run.error == {"message": "bad"}


def test_thread_messages_feedback_and_nested_work(memory_sink: MemorySink) -> None:
    thread = lunatrace.open_thread(user_id="user-9", tags=["support"])
    question = thread.track_message("user", "Where is my order?")
    with lunatrace.parent(question):
        lunatrace.trace(type="agent", name="support-agent")(lambda q: "on its way")("Where is my order?")
    answer = thread.track_message("assistant", "It is on its way.")
    lunatrace.feedback(answer, thumb="up", comment="quick")
    trace = build_trace(memory_sink.events)

    assert len(trace.roots) == 1
    root = trace.root
    assert root is not None
    assert (root.type, root.id, root.synthetic) == ("thread", thread.id, True)
    assert root.tags == ["support"]
    assert root.user_id == "user-9"
    assert [(c.type, c.name) for c in root.children] == [("chat", "user"), ("chat", "assistant")]
    user_msg, bot_msg = root.children
    assert user_msg.input == {"role": "user", "content": "Where is my order?"}
    assert bot_msg.output == {"role": "assistant", "content": "It is on its way."}
    assert [c.name for c in user_msg.children] == ["support-agent"]
    assert bot_msg.feedback == {"thumb": "up", "comment": "quick"}
    assert root.start_ms == user_msg.start_ms
    assert root.end_ms == bot_msg.end_ms


def test_end_metadata_merges_and_estimate_flag(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    rid = tracer.start_run("llm", "gpt-4o", [{"role": "user", "content": "hi"}], metadata={"step": 1})
    tracer.end_run(rid, {"role": "assistant", "content": "hello"}, metadata={"cost": 0.002})
    run = build_trace(memory_sink.events).runs[rid]
    assert run.metadata["step"] == 1
    assert run.cost == 0.002
    assert run.tokens_estimated is True
    assert run.total_tokens > 0


def test_parse_timestamp_and_durations() -> None:
    assert parse_timestamp("1970-01-01T00:00:01.250Z") == 1250
    assert parse_timestamp("1970-01-01T00:00:01.250+00:00") == 1250
    assert parse_timestamp("garbage") is None
    assert parse_timestamp(None) is None
    assert [format_duration(v) for v in (None, 0, 999, 1250, 125_000)] == [
        "-",
        "0ms",
        "999ms",
        "1.25s",
        "2m05s",
    ]


def test_reprs_are_short(agent_events: list[dict[str, Any]]) -> None:
    trace = build_trace(agent_events)
    assert repr(trace) == f"Trace(id={trace.id!r}, name='weather-agent', status='success', runs=4)"
    assert trace.root is not None
    assert [r.status for r in trace.find("lookup")] == ["success", "error"]
    assert trace.find("nothing") == []
    assert repr(trace.root) == f"Run(agent 'weather-agent' success, id={trace.id!r}, children=3)"
