"""The Tracer facade: ordering under concurrency, sampling, state lifetime, secrets."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import uuid
from typing import Any

import pytest

import lunatrace
from lunatrace import api
from lunatrace.core.config import Config
from lunatrace.core.serialize import REDACTED, FieldEncoder
from lunatrace.core.tracer import Tracer
from lunatrace.core.transport import MemorySink
from tests.support.fake_lunary import FakeLunary
from tests.support.trees import assert_valid_tree, by_name, children, end_of
from tests.support.wire import assert_wire_event


def install(**settings: Any) -> MemorySink:
    """A tracer with ``settings`` whose wire events land in the returned sink."""
    config = Config.resolve(**settings)
    encoder = FieldEncoder(config.max_field_bytes, config.mask, secrets=(config.project_key or "",))
    sink = MemorySink(encoder)
    api._tracer = Tracer(config, sink, encoder)
    return sink


@lunatrace.trace(name="leaf", type="tool")
def leaf(worker: int, step: int) -> int:
    return worker * 100 + step


@lunatrace.trace(name="middle")
def middle(worker: int) -> int:
    return sum(leaf(worker, step) for step in range(3))


@lunatrace.trace(name="top", type="agent")
def top(worker: int, barrier: threading.Barrier) -> int:
    barrier.wait()
    return middle(worker) + middle(worker)


def run_fifty_threads() -> None:
    workers = 50
    barrier = threading.Barrier(workers)
    results: dict[int, int] = {}

    def run(worker: int) -> None:
        results[worker] = top(worker, barrier)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: 2 * (3 * n * 100 + 3) for n in range(workers)}


def assert_fifty_valid_trees(events: list[dict[str, Any]]) -> None:
    assert len(events) == 50 * (1 + 2 + 6) * 2
    assert_valid_tree(events)  # start before end, parents first, timestamps non-decreasing
    for event in events:
        assert_wire_event(event)
    for root in by_name(events, "top"):
        worker = root["input"]["worker"]
        mids = children(events, root["runId"])
        assert [m["input"] for m in mids] == [{"worker": worker}] * 2
        for mid in mids:
            leaves = children(events, mid["runId"])
            assert [leaf_["input"] for leaf_ in leaves] == [{"worker": worker, "step": s} for s in range(3)]


def test_fifty_threads_keep_every_tree_valid_and_ordered(memory_sink: MemorySink) -> None:
    run_fifty_threads()
    assert_fifty_valid_trees(memory_sink.events)
    assert lunatrace.get_tracer().open_runs == 0


def test_fifty_threads_through_the_real_delivery(traced_to_server: FakeLunary) -> None:
    run_fifty_threads()
    assert lunatrace.flush(20)
    assert_fifty_valid_trees(traced_to_server.events)
    assert traced_to_server.orphans == [] and traced_to_server.unmatched == []


def test_unknown_parent_falls_back_to_the_enclosing_run_or_root(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    stranger = str(uuid.uuid4())  # a framework run we never saw start
    orphan = tracer.start_run("llm", "gpt-4", "hi", parent_run_id=stranger)

    @lunatrace.trace(name="enclosing")
    def enclosing() -> str:
        return tracer.start_run("llm", "gpt-4", "hi", parent_run_id=stranger)

    adopted = enclosing()
    starts = {e["runId"]: e for e in memory_sink.events if e["event"] == "start"}
    assert "parentRunId" not in starts[orphan]
    assert starts[adopted]["parentRunId"] == by_name(memory_sink.events, "enclosing")[0]["runId"]


def test_explicit_known_parent_wins_over_context(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    other = tracer.start_run("chain", "other", None)

    @lunatrace.trace(name="ctx")
    def ctx() -> str:
        return tracer.start_run("tool", "t", None, parent_run_id=other)

    child = ctx()
    start = next(e for e in memory_sink.events if e["runId"] == child)
    assert start["parentRunId"] == other


def test_a_run_ends_once_and_its_state_is_forgotten(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    rid = tracer.start_run("chain", "once", None)
    assert tracer.is_open(rid) and tracer.open_runs == 1
    assert tracer.end_run(rid, "a") is True
    assert tracer.end_run(rid, "b") is False
    assert tracer.error_run(rid, RuntimeError("late")) is False
    assert not tracer.is_open(rid) and tracer.open_runs == 0
    assert tracer.run_type(rid) == "chain" and tracer.is_known(rid)
    assert [e["event"] for e in memory_sink.events] == ["start", "end"]


def test_queued_records_are_built_in_order_and_may_make_no_event(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    built: list[tuple[int, str]] = []

    def builder(ts_ms: int, ns: int, label: str, rid: str) -> dict[str, Any] | None:
        built.append((ts_ms, label))
        return (
            None if label == "nothing" else {"type": "chain", "event": "start", "runId": rid, "name": label}
        )

    ids = [str(uuid.uuid4()) for _ in range(3)]
    for label, rid in zip(["first", "nothing", "third"], ids, strict=True):
        tracer.queue_record(builder, label, rid)
    assert [label for _, label in built] == ["first", "nothing", "third"]
    assert [ts for ts, _ in built] == sorted(ts for ts, _ in built)
    assert [e["name"] for e in memory_sink.events] == ["first", "third"]
    assert memory_sink.events[0]["runId"] == ids[0]


def test_noted_runs_parent_later_runs_and_carry_their_sampling(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    sent, dropped = str(uuid.uuid4()), str(uuid.uuid4())
    tracer.note_run(sent, "tool")
    tracer.note_run(dropped, "chain", sampled=False)
    assert tracer.is_sampled(sent) and not tracer.is_sampled(dropped)
    assert tracer.run_type(sent) == "tool"
    child = tracer.start_run("chain", "child", None, parent_run_id=sent)
    lost = tracer.start_run("chain", "lost", None, parent_run_id=dropped)
    tracer.end_run(lost)
    tracer.end_run(child)
    assert [e["runId"] for e in memory_sink.events] == [child, child]
    assert memory_sink.events[0]["parentRunId"] == sent


def test_disabled_tracer_emits_nothing_but_returns_ids() -> None:
    sink = install(enabled=False)
    tracer = lunatrace.get_tracer()
    rid = tracer.start_run("chain", "x", None)
    assert uuid.UUID(rid)
    assert tracer.end_run(rid, "y") is False
    mid = lunatrace.open_thread().track_message("user", "hi")
    assert uuid.UUID(mid)
    assert leaf(1, 2) == 102
    assert lunatrace.feedback(rid, thumb="up") is False
    assert sink.events == []


# --- sampling ------------------------------------------------------------------------


def test_sample_rate_zero_drops_whole_traces() -> None:
    sink = install(sample_rate=0.0)
    for worker in range(5):
        assert middle(worker) == worker * 300 + 3
    tracer = lunatrace.get_tracer()
    rid = tracer.start_run("agent", "manual", None)
    child = tracer.start_run("llm", "gpt-4", "hi", parent_run_id=rid)
    assert tracer.end_run(child, "x") is True
    assert tracer.error_run(rid, "failed") is True
    assert sink.events == []
    assert tracer.open_runs == 0


def test_sample_rate_one_keeps_everything() -> None:
    sink = install(sample_rate=1.0)
    for worker in range(5):
        middle(worker)
    assert len(by_name(sink.events, "middle")) == 5 and len(by_name(sink.events, "leaf")) == 15


def test_partial_sampling_keeps_or_drops_whole_trees() -> None:
    random.seed(1234)
    sink = install(sample_rate=0.5)
    for worker in range(200):
        middle(worker)
    kept = by_name(sink.events, "middle")
    assert 60 < len(kept) < 140
    assert_valid_tree(sink.events)
    for root in kept:
        assert len(children(sink.events, root["runId"])) == 3
    assert len(by_name(sink.events, "leaf")) == 3 * len(kept)


async def test_late_children_follow_their_ended_parents_sampling() -> None:
    random.seed(99)
    sink = install(sample_rate=0.5)
    background: list[asyncio.Task[int]] = []

    @lunatrace.trace(name="request")
    async def request(n: int) -> None:
        # fire and forget: the task outlives this run, and starts after it ended
        background.append(asyncio.get_running_loop().create_task(later(n)))

    @lunatrace.trace(name="later")
    async def later(n: int) -> int:
        await asyncio.sleep(0)
        return n

    for n in range(100):
        await request(n)
    await asyncio.gather(*background)
    requests = by_name(sink.events, "request")
    assert 20 < len(requests) < 80
    assert_valid_tree(sink.events)  # no child points at a request that was never sent
    late = by_name(sink.events, "later")
    assert {e["parentRunId"] for e in late} == {r["runId"] for r in requests}


def test_known_ids_are_bounded(memory_sink: MemorySink, monkeypatch: pytest.MonkeyPatch) -> None:
    from lunatrace.core import tracer as tracer_module

    monkeypatch.setattr(tracer_module, "RECENT_RUNS", 10)
    tracer = lunatrace.get_tracer()
    thread = lunatrace.open_thread()
    for n in range(50):
        thread.track_message("user", str(n))
        tracer.end_run(tracer.start_run("chain", "r", None), "ok")
    assert len(tracer._recent) == 10
    assert tracer.open_runs == 0


# --- abandoned runs -------------------------------------------------------------------


def test_close_abandoned_ends_only_stale_runs(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    stale = tracer.start_run("chain", "never-ends", None)
    done = tracer.start_run("chain", "ends", None)
    tracer.end_run(done, "ok")
    assert tracer.close_abandoned(3600) == 0
    assert tracer.close_abandoned(0) == 1
    assert tracer.open_runs == 0
    error = end_of(memory_sink.events, stale)
    assert error["event"] == "error"
    assert error["error"]["message"] == "run abandoned: no end after 0 s"
    assert_valid_tree(memory_sink.events)
    assert tracer.close_abandoned(0) == 0


def test_the_periodic_sweep_runs_on_start(memory_sink: MemorySink, monkeypatch: pytest.MonkeyPatch) -> None:
    from lunatrace.core import tracer as tracer_module

    tracer = lunatrace.get_tracer()
    stale = tracer.start_run("chain", "forgotten", None)
    monkeypatch.setattr(tracer_module, "ABANDONED_AFTER_S", 0.0)
    tracer._last_sweep -= 61 * 10**9  # a minute has passed since the last sweep (ns)
    tracer.start_run("chain", "next", None)
    assert end_of(memory_sink.events, stale)["event"] == "error"


# --- secrets ----------------------------------------------------------------------------


def test_secrets_never_reach_the_server(traced_to_server: FakeLunary) -> None:
    key = traced_to_server.key
    provider_key = "sk-proj-" + "Zx9" * 12
    tracer = lunatrace.get_tracer()

    @lunatrace.trace(name="call-llm")
    def call_llm(config: dict[str, Any]) -> str:
        rid = tracer.start_run(
            "llm",
            "gpt-4",
            [{"role": "user", "content": f"my key is {provider_key}"}],
            params={"api_key": provider_key, "max_tokens": 64, "temperature": 0},
            metadata={"auth": {"Authorization": f"Bearer {key}"}, "prompt_tokens": 3},
        )
        tracer.end_run(rid, {"content": "ok", "token": "abc123"}, usage={"prompt": 3, "completion": 1})
        return str(lunatrace.current_run_id())

    with lunatrace.tags([f"k:{key}"]), lunatrace.identify(key):
        root = call_llm({"llm": {"openai_api_key": provider_key, "model_kwargs": {"secret": "s3"}}})
    assert lunatrace.feedback(root, comment=f"the key was {key}")
    lunatrace.open_thread(user_id=key).track_message("user", f"{provider_key} and {key}")
    assert lunatrace.flush(10)
    events = traced_to_server.events
    text = json.dumps(events)
    assert key not in text
    assert provider_key not in text
    assert "abc123" not in text and '"s3"' not in text
    llm = by_name(events, "gpt-4")[0]
    assert llm["params"] == {"apiKey": REDACTED, "maxTokens": 64, "temperature": 0}
    assert llm["metadata"]["promptTokens"] == 3  # counters are not secrets
    assert end_of(events, llm["runId"])["tokensUsage"] == {"prompt": 3, "completion": 1}
    assert_valid_tree(events)
    assert [e["event"] for e in events if e["event"] not in ("start", "end")] == ["feedback", "chat"]


# --- mask hook ----------------------------------------------------------------------------


def test_mask_hook_covers_input_output_messages_and_metadata() -> None:
    def mask(value: Any) -> Any:
        return json.loads(json.dumps(value).replace("ada@example.com", "<email>"))

    sink = install(mask=mask)
    tracer = lunatrace.get_tracer()
    email = "ada@example.com"
    rid = tracer.start_run(
        "chain", "c", {"to": email}, params={"cc": email}, metadata={"owner": email, "n": {"x": email}}
    )
    tracer.end_run(rid, f"sent to {email}", metadata={"by": email})
    lunatrace.open_thread().track_message("user", f"I am {email}")
    start, end, chat = sink.events
    assert start["input"] == {"to": "<email>"}
    assert start["metadata"] == {"owner": "<email>", "n": '{"x":"<email>"}'}
    assert start["params"] == {"cc": email}  # params are not user content
    assert end["output"] == "sent to <email>" and end["metadata"] == {"by": "<email>"}
    assert chat["message"]["content"] == "I am <email>"


def test_a_raising_mask_hook_masks_everything_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    def mask(value: Any) -> Any:
        raise RuntimeError("hook bug")

    sink = install(mask=mask)
    with caplog.at_level("ERROR", logger="lunatrace"):
        for n in range(3):
            assert leaf(n, n) == 101 * n  # the app is unaffected
        lunatrace.open_thread().track_message("user", "private text")
        rid = lunatrace.get_tracer().start_run("chain", "m", None, metadata={"email": "ada@example.com"})
    assert next(e for e in sink.events if e["runId"] == rid)["metadata"] == {
        "metadata": "[lunatrace: masked]"
    }
    starts = [e for e in sink.events if e["event"] == "start" and e["runId"] != rid]
    ends = [e for e in sink.events if e["event"] == "end"]
    assert [s["input"] for s in starts] == ["[lunatrace: masked]"] * 3
    assert [e["output"] for e in ends] == ["[lunatrace: masked]"] * 3
    assert next(e for e in sink.events if e["event"] == "chat")["message"] == "[lunatrace: masked]"
    assert "private text" not in json.dumps(sink.events) and "ada@" not in json.dumps(sink.events)
    assert len([r for r in caplog.records if "mask hook" in r.getMessage()]) == 1
