"""``@lunatrace.trace`` on functions, coroutines and (async) generators."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import traceback
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import lunatrace
from lunatrace import api, decorators
from lunatrace.core import guard
from lunatrace.core.config import Config
from lunatrace.core.events import RawEvent
from lunatrace.core.tracer import Tracer
from lunatrace.core.transport import MemorySink
from tests.support.trees import assert_valid_tree, by_name, children, end_of
from tests.support.wire import assert_wire_event


class Boom(Exception):
    pass


def only(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = by_name(events, name)
    assert len(found) == 1, f"{len(found)} runs named {name}"
    return found[0]


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in events]


# --- plain functions ----------------------------------------------------------------


@lunatrace.trace
def leaf(x: int) -> int:
    return x * 2


@lunatrace.trace(name="root-step", type="agent", tags=["t"], metadata={"version": 2})
def root(x: int, *, extra: str = "e") -> int:
    return leaf(x) + leaf(x + 1)


def test_nested_calls_form_a_tree(memory_sink: MemorySink) -> None:
    assert root(1, extra="z") == 6
    events = memory_sink.events
    assert_valid_tree(events)
    for event in events:
        assert_wire_event(event)
    top = only(events, "root-step")
    assert top["type"] == "agent" and "parentRunId" not in top
    assert top["input"] == {"x": 1, "extra": "z"}
    assert top["tags"] == ["t"] and top["metadata"] == {"version": 2}
    kids = children(events, top["runId"])
    assert names(kids) == ["leaf", "leaf"]
    assert [k["input"] for k in kids] == [{"x": 1}, {"x": 2}]
    assert [k["type"] for k in kids] == ["chain", "chain"]
    assert [end_of(events, k["runId"])["output"] for k in kids] == [2, 4]
    assert end_of(events, top["runId"])["output"] == 6
    assert events[-1]["runId"] == top["runId"]  # the parent ends last


def test_exception_is_recorded_and_reraised_unchanged(memory_sink: MemorySink) -> None:
    error = Boom("exploded")

    @lunatrace.trace
    def failing() -> None:
        raise error

    @lunatrace.trace
    def caller() -> str:
        try:
            failing()
        except Boom as caught:
            assert caught is error
            assert traceback.extract_tb(caught.__traceback__)[-1].name == "failing"  # its own traceback
        return "recovered"

    assert caller() == "recovered"
    with pytest.raises(Boom) as info:
        failing()
    assert info.value is error
    events = memory_sink.events
    assert_valid_tree(events)
    prefix = "test_exception_is_recorded_and_reraised_unchanged.<locals>."
    first, second = by_name(events, prefix + "failing")
    assert first["parentRunId"] == only(events, prefix + "caller")["runId"]
    assert "parentRunId" not in second
    for run in (first, second):
        failure = end_of(events, run["runId"])
        assert failure["event"] == "error"
        assert failure["error"]["message"] == "Boom: exploded"
        assert "raise error" in failure["error"]["stack"]
        assert "Traceback" in failure["error"]["stack"]


def test_options_to_skip_input_and_output(memory_sink: MemorySink) -> None:
    @lunatrace.trace(name="private", capture_input=False, capture_output=False)
    def private(secret_value: str) -> str:
        return secret_value.upper()

    assert private("a-private-value") == "A-PRIVATE-VALUE"
    start, end = memory_sink.events
    assert "input" not in start and "output" not in end
    assert "private-value" not in str(memory_sink.events).lower()


def test_methods_do_not_capture_self(memory_sink: MemorySink) -> None:
    class Agent:
        @lunatrace.trace(name="act")
        def act(self, goal: str) -> str:
            return goal

    assert Agent().act("win") == "win"
    assert memory_sink.events[0]["input"] == {"goal": "win"}


def test_wrapped_function_keeps_its_identity() -> None:
    @lunatrace.trace(type="tool")
    def documented(query: str, limit: int = 3) -> list[str]:
        """Search the documents."""
        return [query] * limit

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Search the documents."
    assert str(inspect.signature(documented)) == "(query: 'str', limit: 'int' = 3) -> 'list[str]'"
    assert root.__wrapped__(1) == 6  # type: ignore[attr-defined]


# --- threads and tasks ----------------------------------------------------------------


def test_nesting_across_a_thread_pool_with_copied_context(memory_sink: MemorySink) -> None:
    @lunatrace.trace(name="fan-out")
    def fan_out() -> list[int]:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(contextvars.copy_context().run, leaf, n) for n in range(6)]
            return [f.result() for f in futures]

    assert fan_out() == [0, 2, 4, 6, 8, 10]
    events = memory_sink.events
    assert_valid_tree(events)
    parent = only(events, "fan-out")
    assert sorted(k["input"]["x"] for k in children(events, parent["runId"])) == list(range(6))
    assert len(by_name(events, "leaf")) == 6


def test_a_thread_without_the_context_starts_a_new_trace(memory_sink: MemorySink) -> None:
    @lunatrace.trace(name="spawner")
    def spawner() -> int:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(leaf, 5).result()

    spawner()
    assert "parentRunId" not in only(memory_sink.events, "leaf")
    assert_valid_tree(memory_sink.events)


@lunatrace.trace(name="async-leaf")
async def async_leaf(n: int) -> int:
    await asyncio.sleep(0.001 * (5 - n))
    return leaf(n)


@lunatrace.trace(name="async-root")
async def async_root(count: int) -> list[int]:
    return list(await asyncio.gather(*(async_leaf(n) for n in range(count))))


async def test_asyncio_gather_nests_each_task_under_its_caller(memory_sink: MemorySink) -> None:
    results = await asyncio.gather(async_root(3), async_root(2))
    assert results == [[0, 2, 4], [0, 2]]
    events = memory_sink.events
    assert_valid_tree(events)
    roots = by_name(events, "async-root")
    assert [r.get("parentRunId") for r in roots] == [None, None]
    for top, count in zip(roots, (3, 2), strict=True):
        kids = children(events, top["runId"])
        assert sorted(k["input"]["n"] for k in kids) == list(range(count))
        for kid in kids:
            grandkids = children(events, kid["runId"])
            assert [(g["name"], g["input"]) for g in grandkids] == [("leaf", {"x": kid["input"]["n"]})]


async def test_async_exception_is_recorded_and_reraised(memory_sink: MemorySink) -> None:
    @lunatrace.trace(name="async-fail")
    async def async_fail() -> None:
        await asyncio.sleep(0)
        raise Boom("async")

    with pytest.raises(Boom, match="async"):
        await async_fail()
    assert end_of(memory_sink.events, only(memory_sink.events, "async-fail")["runId"])["event"] == "error"


# --- generators -------------------------------------------------------------------------


@lunatrace.trace(name="numbers")
def numbers(count: int) -> Iterator[int]:
    for n in range(count):
        yield leaf(n)


def test_generator_run_spans_the_iteration(memory_sink: MemorySink) -> None:
    @lunatrace.trace(name="consumer")
    def consume() -> list[int]:
        out = []
        for value in numbers(3):
            out.append(value)
            leaf(100)  # the consumer's own work, between yields
        return out

    assert consume() == [0, 2, 4]
    events = memory_sink.events
    assert_valid_tree(events)
    consumer, gen = only(events, "consumer"), only(events, "numbers")
    assert gen["parentRunId"] == consumer["runId"]
    inside = children(events, gen["runId"])
    assert [k["input"] for k in inside] == [{"x": 0}, {"x": 1}, {"x": 2}]
    between = [k for k in children(events, consumer["runId"]) if k["name"] == "leaf"]
    assert [k["input"] for k in between] == [{"x": 100}] * 3
    assert end_of(events, gen["runId"])["output"] == [0, 2, 4]
    # the generator's end comes after all of its children's ends
    gen_end = events.index(end_of(events, gen["runId"]))
    assert all(events.index(end_of(events, k["runId"])) < gen_end for k in inside)


def test_generator_closed_early_ends_its_run(memory_sink: MemorySink) -> None:
    gen = numbers(10)
    assert next(gen) == 0 and next(gen) == 2
    gen.close()
    events = memory_sink.events
    assert_valid_tree(events)
    end = end_of(events, only(events, "numbers")["runId"])
    assert end["event"] == "end" and end["output"] == [0, 2]


def test_generator_abandoned_by_break_ends_its_run(memory_sink: MemorySink) -> None:
    for value in numbers(10):
        if value == 2:
            break
    end = end_of(memory_sink.events, only(memory_sink.events, "numbers")["runId"])
    assert end["output"] == [0, 2]


def test_generator_error_is_recorded_and_reraised(memory_sink: MemorySink) -> None:
    @lunatrace.trace(name="flaky")
    def flaky() -> Iterator[int]:
        yield 1
        raise Boom("mid-stream")

    gen = flaky()
    assert next(gen) == 1
    with pytest.raises(Boom, match="mid-stream"):
        next(gen)
    end = end_of(memory_sink.events, only(memory_sink.events, "flaky")["runId"])
    assert end["event"] == "error" and "mid-stream" in end["error"]["message"]


def test_generator_send_throw_and_return_value_are_forwarded(memory_sink: MemorySink) -> None:
    @lunatrace.trace(name="echo")
    def echo() -> Iterator[Any]:
        received = []
        try:
            while True:
                value = yield len(received)
                received.append(value)
        except Boom:
            yield "handled"
        return received

    def delegate() -> Iterator[Any]:
        result = yield from echo()
        return result

    gen = delegate()
    assert next(gen) == 0
    assert gen.send("a") == 1
    assert gen.send("b") == 2
    assert gen.throw(Boom()) == "handled"
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == ["a", "b"]
    end = end_of(memory_sink.events, only(memory_sink.events, "echo")["runId"])
    assert end["event"] == "end" and end["output"] == [0, 1, 2, "handled", ["a", "b"]]


def test_a_generators_return_value_is_kept_past_the_items_kept(memory_sink: MemorySink) -> None:
    @lunatrace.trace(name="long")
    def long() -> Iterator[Any]:
        yield from range(decorators.MAX_YIELDED + 500)
        return "done"

    def delegate() -> Iterator[Any]:
        return (yield from long())

    gen = delegate()
    assert sum(1 for _ in gen) == decorators.MAX_YIELDED + 500
    end = end_of(memory_sink.events, only(memory_sink.events, "long")["runId"])
    assert end["output"] == [*range(decorators.MAX_YIELDED), "done"]


def test_a_generator_that_is_never_iterated_starts_no_run(memory_sink: MemorySink) -> None:
    gen = numbers(3)
    del gen
    assert memory_sink.events == []


@lunatrace.trace(name="stream")
async def stream(count: int) -> AsyncIterator[int]:
    for n in range(count):
        await asyncio.sleep(0)
        yield await async_leaf(n)


async def test_async_generator_run_spans_the_iteration(memory_sink: MemorySink) -> None:
    @lunatrace.trace(name="async-consumer")
    async def consume() -> list[int]:
        return [value async for value in stream(3)]

    assert await consume() == [0, 2, 4]
    events = memory_sink.events
    assert_valid_tree(events)
    run = only(events, "stream")
    assert run["parentRunId"] == only(events, "async-consumer")["runId"]
    assert [k["name"] for k in children(events, run["runId"])] == ["async-leaf"] * 3
    assert end_of(events, run["runId"])["output"] == [0, 2, 4]


async def test_async_generator_closed_early_ends_its_run(memory_sink: MemorySink) -> None:
    agen = stream(10)
    assert await agen.__anext__() == 0
    await agen.aclose()
    events = memory_sink.events
    assert_valid_tree(events)
    end = end_of(events, only(events, "stream")["runId"])
    assert end["event"] == "end" and end["output"] == [0]


async def test_async_generator_error_and_asend(memory_sink: MemorySink) -> None:
    @lunatrace.trace(name="accumulate")
    async def accumulate() -> AsyncIterator[int]:
        total = 0
        while True:
            value = yield total
            if value is None:
                raise Boom("no value")
            total += value

    agen = accumulate()
    assert await agen.asend(None) == 0
    assert await agen.asend(5) == 5
    assert await agen.asend(2) == 7
    with pytest.raises(Boom):
        await agen.asend(None)
    end = end_of(memory_sink.events, only(memory_sink.events, "accumulate")["runId"])
    assert end["event"] == "error"


# --- never harm the host ------------------------------------------------------------------


class ExplodingSink(MemorySink):
    def emit(self, event: RawEvent) -> None:
        raise RuntimeError("sink is broken")


def test_a_broken_sink_never_reaches_user_code() -> None:
    config = Config.resolve()
    api._tracer = Tracer(config, ExplodingSink())
    try:
        assert root(3) == 14
        assert list(numbers(2)) == [0, 2]
        with pytest.raises(Boom):
            lunatrace.trace(lambda: (_ for _ in ()).throw(Boom()))()
        assert lunatrace.stats()["internal_errors"] > 0  # counted, and logged
    finally:
        api._tracer = None


def test_a_tracer_that_cannot_be_built_never_reaches_user_code(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(config: Config) -> Tracer:
        raise OSError("read-only file system")

    monkeypatch.setattr(api, "_new_tracer", broken)  # fault injection: the environment is broken
    with caplog.at_level("WARNING", logger="lunatrace"):
        assert root(3) == 14
        assert list(numbers(2)) == [0, 2]
        with pytest.raises(Boom, match="own error"):
            lunatrace.trace(name="raiser")(lambda: (_ for _ in ()).throw(Boom("own error")))()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [  # once, not once per call: root, 2 leaves, numbers, 2 leaves, raiser
        "lunatrace: start of a traced function failed (OSError: read-only file system); "
        "root-step runs untraced"
    ]
    assert guard.failures() == {"start of a traced function": 7}


def test_a_tracer_lost_while_the_function_runs_never_reaches_user_code(
    memory_sink: MemorySink, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(config: Config) -> Tracer:
        raise OSError("read-only file system")

    monkeypatch.setattr(api, "_new_tracer", broken)
    tracer = api._tracer

    @lunatrace.trace(name="loses-its-tracer")
    def loses_its_tracer(fail: bool) -> str:
        api._tracer = None  # as after lunatrace.shutdown(): the end must build a tracer, and cannot
        if fail:
            raise Boom("own error")
        return "result"

    assert loses_its_tracer(False) == "result"
    api._tracer = tracer
    with pytest.raises(Boom, match="own error"):
        loses_its_tracer(True)
    assert guard.failures() == {"end of a traced function": 1, "error of a traced function": 1}
    assert [e["event"] for e in memory_sink.events] == ["start", "start"]
