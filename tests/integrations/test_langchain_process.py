"""One handler under concurrency, process-wide instrumentation, nesting with @trace,
no leftover state, and hooks that never raise."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

import lunatrace
from lunatrace import api
from lunatrace.core.config import Config
from lunatrace.core.tracer import Tracer
from lunatrace.core.transport import MemorySink
from lunatrace.integrations.langchain import (
    CallbackHandler,
    instrument,
    instrumented_handler,
    uninstrument,
)
from lunatrace.integrations.langchain.handler import HIDDEN
from tests.support.trees import assert_valid_tree, by_name, children, end_of

PROMPT = ChatPromptTemplate.from_messages([("human", "Echo {n}")])


def echo_chain() -> Any:
    """prompt | model | parser whose answer names the request, so trees can be checked."""

    def answer(messages: Any) -> str:
        return f"answer {messages.to_messages()[-1].content.split()[-1]}"

    model = FakeListChatModel(responses=["unused"])
    return PROMPT | RunnableLambda(answer, name="route") | model.bind() | StrOutputParser()


@pytest.fixture
def no_instrumentation() -> Iterator[None]:
    uninstrument()
    yield
    uninstrument()


def assert_request_trees(events: list[dict[str, Any]], count: int) -> None:
    """``count`` roots, each with exactly its own 4 children, inputs and outputs matching."""
    assert_valid_tree(events)
    roots = children(events, None)
    assert len(roots) == count
    seen = set()
    for root in roots:
        n = root["input"]["n"]
        kids = children(events, root["runId"])
        assert [k["name"] for k in kids] == [
            "ChatPromptTemplate",
            "route",
            "FakeListChatModel",
            "StrOutputParser",
        ]
        assert end_of(events, kids[1]["runId"])["output"] == f"answer {n}"
        assert end_of(events, kids[0]["runId"])["output"] == [{"role": "user", "content": f"Echo {n}"}]
        seen.add(n)
    assert seen == set(range(count))


async def test_fifty_concurrent_ainvokes_through_one_handler(events_of: Any) -> None:
    handler = CallbackHandler()
    chain = PROMPT | RunnableLambda(_slow_echo, name="route")

    async def one(n: int) -> Any:
        return await chain.ainvoke({"n": n}, config={"callbacks": [handler]})

    results = await asyncio.gather(*(one(n) for n in range(50)))
    assert results == [f"answer {n}" for n in range(50)]
    events = events_of()
    assert_valid_tree(events)
    roots = children(events, None)
    assert len(roots) == 50
    for root in roots:
        n = root["input"]["n"]
        prompt, route = children(events, root["runId"])
        assert end_of(events, prompt["runId"])["output"] == [{"role": "user", "content": f"Echo {n}"}]
        assert end_of(events, route["runId"])["output"] == f"answer {n}"
        assert end_of(events, root["runId"])["output"] == f"answer {n}"
    assert lunatrace.get_tracer().open_runs == 0
    assert not handler._unsampled and not handler._exchanges and not HIDDEN


async def _slow_echo(messages: Any) -> str:
    await asyncio.sleep(0.01)  # let the 50 requests interleave
    return f"answer {messages.to_messages()[-1].content.split()[-1]}"


def test_thread_pool_batch_and_threads_through_one_handler(events_of: Any) -> None:
    handler = CallbackHandler()
    chain = echo_chain()
    outputs = chain.batch(
        [{"n": n} for n in range(10)], config={"callbacks": [handler], "max_concurrency": 4}
    )
    assert len(outputs) == 10
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda n: chain.invoke({"n": n}, config={"callbacks": [handler]}), range(10, 30)))
    events = events_of()
    assert_request_trees(events, 30)
    assert lunatrace.get_tracer().open_runs == 0


def test_no_growth_over_ten_thousand_invokes(memory_sink: MemorySink) -> None:
    handler = CallbackHandler()
    chain = PROMPT | RunnableLambda(lambda m: "x", name="route")
    tracer = lunatrace.get_tracer()
    for n in range(10_000):
        chain.invoke({"n": n}, config={"callbacks": [handler]})
        if n == 100:
            memory_sink.events.clear()
    assert tracer.open_runs == 0
    assert not handler._unsampled and not handler._exchanges and not HIDDEN and not handler._streaming
    assert len(memory_sink.events) == (10_000 - 101) * 6


def test_ids_given_as_other_objects_or_strings_match_the_same_run(memory_sink: MemorySink) -> None:
    # LangChain passes one UUID object per run; any equal id (another object, a string)
    # must still name the same run, for its end and as its children's parent.
    handler = CallbackHandler()
    root, child = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start(None, {"q": 1}, run_id=root, name="root")
    handler.on_chain_start(None, {"q": 2}, run_id=child, parent_run_id=str(root), name="child")
    handler.on_chain_end("child done", run_id=uuid.UUID(str(child)))
    handler.on_chain_end("root done", run_id=str(root))
    events = memory_sink.events
    assert_valid_tree(events)
    (child_start,) = by_name(events, "child")
    assert child_start["parentRunId"] == str(root)
    assert end_of(events, str(child))["output"] == "child done"
    assert end_of(events, str(root))["output"] == "root done"
    assert lunatrace.get_tracer().open_runs == 0


def test_instrument_traces_without_callbacks(events_of: Any, no_instrumentation: None) -> None:
    handler = instrument(user_id="global-user")
    assert instrument() is handler and instrumented_handler() is handler  # idempotent
    echo_chain().invoke({"n": 0})
    # Also passed explicitly: still one set of events (LangChain keeps one lunatrace handler).
    echo_chain().invoke({"n": 1}, config={"callbacks": [handler]})
    # A different explicit handler wins over the process-wide one: its options apply.
    echo_chain().invoke({"n": 2}, config={"callbacks": [CallbackHandler(user_id="explicit")]})
    uninstrument()
    echo_chain().invoke({"n": 3})
    events = events_of()
    assert_request_trees(events, 3)
    assert [r["userId"] for r in children(events, None)] == ["global-user", "global-user", "explicit"]


def test_instrument_reaches_other_threads_and_event_loops(events_of: Any, no_instrumentation: None) -> None:
    instrument()
    chain = echo_chain()
    with ThreadPoolExecutor(max_workers=2) as pool:
        pool.submit(chain.invoke, {"n": 0}).result()
        pool.submit(lambda: asyncio.run(chain.ainvoke({"n": 1}))).result()
    assert_request_trees(events_of(), 2)


def test_trace_inside_runnable_lambda_nests_under_it(events_of: Any) -> None:
    @lunatrace.trace(name="helper")
    def helper(x: int) -> int:
        return x * 2

    @lunatrace.trace(name="async_helper")
    async def async_helper(x: int) -> int:
        return x + 1

    async def both(x: int) -> int:
        return await async_helper(helper(x))

    chain = RunnableLambda(lambda x: x, name="first") | RunnableLambda(both, name="step")
    assert asyncio.run(chain.ainvoke(3, config={"callbacks": [CallbackHandler()]})) == 7
    sync_chain = RunnableLambda(lambda x: x, name="first") | RunnableLambda(helper, name="step")
    assert sync_chain.invoke(3, config={"callbacks": [CallbackHandler()]}) == 6
    events = events_of()
    assert_valid_tree(events)
    async_step, sync_step = by_name(events, "step")
    assert [c["name"] for c in children(events, async_step["runId"])] == ["helper", "async_helper"]
    assert [c["name"] for c in children(events, sync_step["runId"])] == ["helper"]


def test_chain_inside_trace_nests_under_it(events_of: Any) -> None:
    chain = echo_chain()

    @lunatrace.trace(name="handle_request")
    def handle(n: int) -> str:
        return str(chain.invoke({"n": n}, config={"callbacks": [CallbackHandler()]}))

    @lunatrace.trace(name="inner_fn")
    def inner(x: Any) -> Any:
        return chain.invoke({"n": 7}, config={"callbacks": [CallbackHandler()]})

    assert handle(0) == "unused"
    # A chain called from a decorated function inside a LangChain run nests under the function.
    outer = RunnableLambda(lambda x: inner(x), name="outer_step")
    outer.invoke(1, config={"callbacks": [CallbackHandler()]})
    events = events_of()
    assert_valid_tree(events)
    request = by_name(events, "handle_request")[0]
    (sequence,) = children(events, request["runId"])
    assert sequence["name"] == "RunnableSequence"
    assert len(children(events, sequence["runId"])) == 4
    step = by_name(events, "outer_step")[0]
    (fn,) = children(events, step["runId"])
    assert fn["name"] == "inner_fn"
    (nested,) = children(events, fn["runId"])
    assert nested["name"] == "RunnableSequence"
    assert end_of(events, children(events, nested["runId"])[1]["runId"])["output"] == "answer 7"


def test_chain_inside_thread_message_parent(events_of: Any) -> None:
    thread = lunatrace.open_thread()
    message_id = thread.track_message("user", "hello")
    with lunatrace.parent(message_id):
        echo_chain().invoke({"n": 0}, config={"callbacks": [CallbackHandler()]})
    events = events_of()
    (root,) = by_name(events, "RunnableSequence")
    assert root["parentRunId"] == message_id
    assert_valid_tree(events, allow_parents=[thread.id, message_id])


def test_handler_below_the_root_makes_roots(events_of: Any) -> None:
    model = FakeListChatModel(responses=["x"]).with_config(callbacks=[CallbackHandler()])
    chain = PROMPT | model
    chain.invoke({"n": 1})
    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    assert root["type"] == "llm"


def test_hooks_never_raise_on_garbage(events_of: Any, caplog: pytest.LogCaptureFixture) -> None:
    handler = CallbackHandler()
    rid = uuid.uuid4()
    calls = [
        lambda: handler.on_chain_start(None, None, run_id=rid),
        lambda: handler.on_chat_model_start(None, [[object()]], run_id=uuid.uuid4(), invocation_params=5),
        lambda: handler.on_llm_start({"kwargs": 3}, ["p", "q"], run_id=uuid.uuid4(), metadata={}),
        lambda: handler.on_llm_new_token(None, run_id=uuid.uuid4()),  # type: ignore[arg-type]
        lambda: handler.on_llm_end(object(), run_id=uuid.uuid4()),
        lambda: handler.on_llm_end(None, run_id=rid),
        lambda: handler.on_tool_start(None, None, run_id=uuid.uuid4(), inputs=None),  # type: ignore[arg-type]
        lambda: handler.on_tool_end(object(), run_id=uuid.uuid4()),
        lambda: handler.on_retriever_end([object()], run_id=uuid.uuid4()),
        lambda: handler.on_custom_event("x", {"a": 1}, run_id=uuid.uuid4()),
        lambda: handler.on_retry(object(), run_id=uuid.uuid4()),
        lambda: handler.on_chain_error("not an exception", run_id=uuid.uuid4()),  # type: ignore[arg-type]
        lambda: handler.on_chain_start({}, {}, run_id="not-a-uuid"),  # type: ignore[arg-type]
        lambda: handler.on_chain_end({}, run_id="not-a-uuid"),  # type: ignore[arg-type]
    ]
    with caplog.at_level(logging.DEBUG, logger="lunatrace"):
        for call in calls:
            call()
    events = events_of()
    # The well-formed parts still produced events; nothing escaped.
    assert any(e.get("runId") == str(rid) for e in events)


class ExplodingMetadata(dict[str, Any]):
    """Metadata that fails when read, to break the handler from the inside."""

    def items(self) -> Any:
        raise RuntimeError("metadata exploded")


def test_a_failing_hook_warns_once_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    handler = CallbackHandler()
    with caplog.at_level(logging.DEBUG, logger="lunatrace"):
        for _ in range(3):
            handler.on_chain_start(None, {"x": 1}, run_id=uuid.uuid4(), metadata=ExplodingMetadata(k=1))
        lunatrace.flush()  # metadata is mapped on the worker
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "LangChainStart" in warnings[0] and "metadata exploded" in warnings[0]
    assert lunatrace.stats()["internal_errors"] == 3
    assert sum("failed again" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG) == 2


def test_non_string_tags_are_kept_as_text(events_of: Any) -> None:
    config: Any = {"callbacks": [CallbackHandler()], "tags": [404]}
    RunnableLambda(lambda x: x, name="tagged").invoke(1, config=config)
    (run,) = children(events_of(), None)
    assert run["tags"] == ["404"]


def test_trace_inside_a_folded_chain_nests_under_its_shown_ancestor(events_of: Any) -> None:
    @lunatrace.trace(name="helper")
    def helper(x: int) -> int:
        return x + 1

    hidden = RunnableLambda(helper, name="plumbing").with_config(tags=["langsmith:hidden"])
    chain = RunnableLambda(lambda x: x, name="first") | hidden
    assert chain.invoke(1, config={"callbacks": [CallbackHandler()]}) == 2
    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    assert not by_name(events, "plumbing")
    (helper_run,) = by_name(events, "helper")
    assert helper_run["parentRunId"] == root["runId"]


def test_trace_inside_an_unsampled_trace_is_left_out_with_it(events_of: Any) -> None:
    @lunatrace.trace(name="helper")
    def helper(x: int) -> int:
        return x + 1

    chain = RunnableLambda(lambda x: x, name="first") | RunnableLambda(helper, name="step")
    chain.invoke(1, config={"callbacks": [CallbackHandler(sample_rate=0.0)]})
    chain.invoke(1, config={"callbacks": [CallbackHandler()]})
    events = events_of()
    assert_valid_tree(events)
    assert len(children(events, None)) == 1  # only the sampled trace, helper included
    (helper_run,) = by_name(events, "helper")
    (step,) = by_name(events, "step")
    assert helper_run["parentRunId"] == step["runId"]


def test_runs_left_open_are_closed_as_errors_after_the_limit(
    events_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LangChain's runs are the tracer's: its sweep, on the worker's tick, ends them.
    from lunatrace.core import tracer as tracer_module

    handler = CallbackHandler()
    forgotten, later = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start(None, {"q": 1}, run_id=forgotten, name="forgotten")
    lunatrace.flush()
    tracer = lunatrace.get_tracer()
    assert tracer.open_runs == 1
    monkeypatch.setattr(tracer_module, "ABANDONED_AFTER_S", 0.0)
    monkeypatch.setattr(tracer_module, "SWEEP_INTERVAL_NS", 0)
    deadline = time.monotonic() + 10
    while tracer.open_runs and time.monotonic() < deadline:
        time.sleep(0.01)
    monkeypatch.setattr(tracer_module, "ABANDONED_AFTER_S", 3600.0)
    handler.on_chain_start(None, {"q": 2}, run_id=later, name="later")
    handler.on_chain_end("done", run_id=later)
    handler.on_chain_end("too late", run_id=forgotten)
    events = events_of()
    assert [e["event"] for e in events if e["runId"] == str(forgotten)] == ["start", "error"]
    error = end_of(events, str(forgotten))
    assert error["type"] == "chain" and "abandoned" in error["error"]["message"]
    assert [e["event"] for e in events if e["runId"] == str(later)] == ["start", "end"]
    assert tracer.open_runs == 0


def test_a_run_past_the_limit_does_not_block_a_synchronous_sink(memory_sink: MemorySink) -> None:
    # A sink that builds records as they arrive (the in-memory one, under its lock) must
    # never be re-entered by a build: the sweep's errors are emitted on a tick instead.
    sink = memory_sink
    now = [10**12]
    tracer = lunatrace.get_tracer()
    api._tracer = Tracer(tracer.config, sink, tracer.encoder, now_ns=lambda: now[0])
    handler = CallbackHandler()
    old, new = uuid.uuid4(), uuid.uuid4()
    handler.on_chain_start(None, {"q": 1}, run_id=old, name="old")
    now[0] += 7_200 * 10**9  # two hours later
    started = threading.Thread(
        target=lambda: handler.on_chain_start(None, {"q": 2}, run_id=new, name="new"), daemon=True
    )
    started.start()
    started.join(5)
    assert not started.is_alive(), "a start deadlocked the sink"
    lunatrace.get_tracer().sweep_abandoned()  # what the worker's tick does
    assert [e["event"] for e in sink.events if e["runId"] == str(old)] == ["start", "error"]
    assert [e["event"] for e in sink.events if e["runId"] == str(new)] == ["start"]


class HeldSink(MemorySink):
    """Keeps records unbuilt until released: a worker that had not reached them yet."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Any] = []

    def emit(self, event: Any) -> None:
        self.held.append(event)

    def release(self) -> None:
        for event in self.held:
            super().emit(event)


def test_a_start_built_after_a_configure_still_gets_its_end() -> None:
    # configure() flushes the previous tracer within a bound; a start it had not built by
    # then is built later, by its own worker: its run must be open where the end looks.
    config = Config.resolve()
    before, after = HeldSink(), MemorySink()
    old = api._tracer = Tracer(config, before)
    handler, rid = CallbackHandler(), uuid.uuid4()
    handler.on_chain_start(None, {"q": 1}, run_id=rid, name="across")
    new = Tracer(config, after)
    new.take_open_runs(old)  # what configure() does after its bounded flush
    api._tracer = new
    before.release()
    handler.on_chain_end("done", run_id=rid)
    assert [e["event"] for e in before.events] == ["start"]
    assert [(e["event"], e["output"]) for e in after.events] == [("end", "done")]
    assert new.open_runs == 0
