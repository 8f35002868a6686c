"""The Tracer facade: ordering under concurrency, sampling, state lifetime, secrets."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from typing import Any, NamedTuple

import pytest

import lunatrace
from lunatrace import api
from lunatrace.core import guard
from lunatrace.core.config import Config
from lunatrace.core.events import HookRecord, MonotonicClock, start_event
from lunatrace.core.runs import RunRegistry
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


# --- ordering, deterministically ----------------------------------------------------------
# The 50-thread tests above show the guarantees hold under load; these make each mechanism
# behind them fail a test when it is removed, whatever the scheduler does.


class Readings:
    """A ``perf_counter_ns`` that returns the readings it is given, in turn (the first
    is the tracer's own, when it is made)."""

    def __init__(self, *ms: int) -> None:
        self.readings = [m * 1_000_000 for m in ms]

    def __call__(self) -> int:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def test_a_reading_stamped_after_a_later_one_does_not_go_back() -> None:
    # start_run reads the counter before taking the emit lock: a thread that read first
    # may stamp second. The clock then gives it the other's time, never an earlier one.
    sink = MemorySink()
    tracer = Tracer(Config.resolve(), sink, clock=MonotonicClock(anchor_ns=0), now_ns=Readings(0, 10, 5))
    first = tracer.start_run("chain", "read late", None)
    second = tracer.start_run("chain", "read early", None)
    stamps = [(e["runId"], e["timestamp"]) for e in sink.events]
    assert stamps == [(first, "1970-01-01T00:00:00.010Z"), (second, "1970-01-01T00:00:00.010Z")]


class YieldingSink(MemorySink):
    """Waits inside its first ``emit``, before appending, for another event to arrive.

    Without the emit lock, another thread stamps and appends meanwhile: its later
    timestamp lands first. With it, that thread cannot stamp until this ``emit`` returns
    (the wait then times out).
    """

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.overtaken = threading.Event()

    def emit(self, event: Any) -> None:
        if not self.inside.is_set():
            self.inside.set()
            self.overtaken.wait(0.3)
        else:
            self.overtaken.set()
        super().emit(event)


EMITTERS = {
    "start_run": lambda tracer: tracer.start_run("chain", "run", None),
    "error_run": lambda tracer: tracer.error_run(tracer.start_run("chain", "run", None), "failed"),
    "queue_hook": lambda tracer: tracer.queue_hook(Labelled("hook", str(uuid.uuid4()), [])),
    "track_message": lambda tracer: tracer.track_message(str(uuid.uuid4()), "user", "hi"),
}


@pytest.mark.parametrize("emitter", sorted(EMITTERS))
def test_stamping_and_the_hand_off_are_one_step(emitter: str) -> None:
    sink = YieldingSink()
    counter = iter(range(1, 1_000))
    tracer = Tracer(
        Config.resolve(), sink, clock=MonotonicClock(anchor_ns=0), now_ns=lambda: next(counter) * 1_000_000
    )
    if emitter == "error_run":  # its start is the sink's first event: let that pass
        sink.inside.set()
        sink.overtaken.set()
        rid = tracer.start_run("chain", "run", None)
        sink.inside.clear()
        sink.overtaken.clear()
        EMITTERS[emitter] = lambda tracer, rid=rid: tracer.error_run(rid, "failed")  # type: ignore[misc]
    first = threading.Thread(target=EMITTERS[emitter], args=(tracer,))
    first.start()
    assert sink.inside.wait(5)
    tracer.start_run("chain", "second", None)
    first.join(5)
    stamps = [e["timestamp"] for e in sink.events]
    assert len(stamps) == (3 if emitter == "error_run" else 2)
    assert stamps == sorted(stamps) and stamps[-1] > stamps[-2]


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


class Labelled(NamedTuple):
    """A framework hook record as an integration would queue one."""

    label: str
    rid: str
    built: list[tuple[int, str]]

    def build(self, ts_ms: int, ns: int, runs: RunRegistry) -> dict[str, Any] | None:
        self.built.append((ts_ms, self.label))
        if self.label == "nothing":
            return None
        if self.label == "broken":
            raise RuntimeError("a mapping bug")
        return start_event("chain", self.rid, parent=None, name=self.label, input=None)


def test_queued_hooks_are_built_in_order_and_may_make_no_event(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    built: list[tuple[int, str]] = []
    ids = [str(uuid.uuid4()) for _ in range(4)]
    before = guard.failures().get("mapping Labelled", 0)
    for label, rid in zip(["first", "nothing", "broken", "fourth"], ids, strict=True):
        tracer.queue_hook(Labelled(label, rid, built))
    assert [label for _, label in built] == ["first", "nothing", "broken", "fourth"]
    assert [ts for ts, _ in built] == sorted(ts for ts, _ in built)
    assert [e["name"] for e in memory_sink.events] == ["first", "fourth"]
    assert memory_sink.events[0]["runId"] == ids[0]
    assert guard.failures()["mapping Labelled"] == before + 1  # the bug is counted, not raised


def test_a_hook_record_builds_against_the_tracer_that_queued_it() -> None:
    # A record waits in the queue; a configure() meanwhile must not send it elsewhere,
    # nor make it read another tracer's runs.
    first, second = install(), None
    tracer = lunatrace.get_tracer()
    rid = str(uuid.uuid4())
    seen: list[RunRegistry] = []

    class Opens(NamedTuple):
        def build(self, ts_ms: int, ns: int, runs: RunRegistry) -> dict[str, Any]:
            seen.append(runs)
            return start_event("chain", rid, parent=None, name="queued", input=None)

    record = HookRecord(1, 1, tracer.runs, Opens())
    second = install()
    assert lunatrace.get_tracer() is not tracer
    first.emit(record)
    assert seen == [tracer.runs]
    assert [e["name"] for e in first.events] == ["queued"] and second.events == []


def test_remembered_runs_parent_later_runs_and_carry_their_sampling(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    sent, dropped = str(uuid.uuid4()), str(uuid.uuid4())
    tracer.runs.remember(sent, "tool", True)
    tracer.runs.remember(dropped, "chain", sampled=False)
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
    from lunatrace.core import runs as runs_module

    monkeypatch.setattr(runs_module, "RECENT_RUNS", 10)
    tracer = lunatrace.get_tracer()
    thread = lunatrace.open_thread()
    ids = []
    for n in range(50):
        thread.track_message("user", str(n))
        ids.append(tracer.start_run("chain", "r", None))
        tracer.end_run(ids[-1], "ok")
    assert [tracer.is_known(rid) for rid in ids[-5:]] == [True] * 5
    assert not any(tracer.is_known(rid) for rid in ids[:-5])
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


class Counter:
    """A ``perf_counter_ns`` whose readings a test sets."""

    def __init__(self, ns: int = 0) -> None:
        self.ns = ns

    def __call__(self) -> int:
        return self.ns


def test_the_sweep_runs_at_most_once_a_minute_and_ends_runs_open_for_an_hour() -> None:
    sink = MemorySink()
    now = Counter(10**12)
    tracer = Tracer(Config.resolve(), sink, clock=MonotonicClock(anchor_ns=0), now_ns=now)
    old = tracer.start_run("chain", "forgotten", None)
    now.ns += 3_000 * 10**9
    young = tracer.start_run("chain", "recent", None)
    now.ns += 599 * 10**9  # old is 3599 s old: not yet abandoned
    tracer.sweep_abandoned()
    assert tracer.is_open(old)
    now.ns += 31 * 10**9  # abandoned now, but the last sweep was 31 s ago
    tracer.sweep_abandoned()
    assert tracer.is_open(old)
    now.ns += 30 * 10**9
    tracer.sweep_abandoned()
    assert not tracer.is_open(old) and tracer.is_open(young)
    error = end_of(sink.events, old)
    assert error["event"] == "error" and error["error"]["message"] == "run abandoned: no end after 3600 s"


def test_the_worker_runs_the_sweep_on_its_own_thread(
    traced_to_server: FakeLunary, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lunatrace.core import tracer as tracer_module

    tracer = lunatrace.get_tracer()
    stale = tracer.start_run("chain", "forgotten", None)
    threads: list[str] = []
    monkeypatch.setattr(tracer_module, "ABANDONED_AFTER_S", 0.0)
    monkeypatch.setattr(tracer_module, "SWEEP_INTERVAL_NS", 0)
    original = tracer.close_abandoned
    monkeypatch.setattr(
        tracer,
        "close_abandoned",
        lambda age: (threads.append(threading.current_thread().name), original(age))[1],
    )
    deadline = time.monotonic() + 10
    while tracer.is_open(stale) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lunatrace.flush()
    assert end_of(traced_to_server.events, stale)["event"] == "error"
    assert set(threads) == {"lunatrace-worker"}


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
