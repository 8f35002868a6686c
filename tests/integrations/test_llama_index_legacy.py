"""LlamaIndex through the legacy ``Settings.callback_manager``: real LlamaIndex objects with
its own mock models, delivered over HTTP to a fake Lunary server.

LlamaIndex objects capture the callback manager when they are built, so every test
builds its index, engines and models after the handler is registered (as applications
must; see docs/llama_index.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core import Settings
from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.tools import ToolMetadata, ToolOutput

import lunatrace
from lunatrace.integrations.llama_index import CallbackHandler, instrument, uninstrument
from tests.integrations import li_fakes as F
from tests.integrations.li_fakes import delivered, finish, shape, starts_of

LEGACY_QUERY_TREE = [
    (
        "chain",
        "query",
        [
            ("retriever", "retrieve", [("embed", "MockEmbedding", [])]),
            ("chain", "synthesize", [("llm", "MockLLM", [])]),
        ],
    )
]


def _register(handler: CallbackHandler) -> Iterator[CallbackHandler]:
    previous = Settings._callback_manager
    Settings.callback_manager = CallbackManager([handler])
    F.use_mock_models()  # models built now capture the handler
    yield handler
    Settings.callback_manager = previous
    F.use_mock_models()


@pytest.fixture
def legacy() -> Iterator[CallbackHandler]:
    yield from _register(CallbackHandler())


@pytest.fixture
def index(legacy: CallbackHandler) -> Any:
    return F.build_index()


def _only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, [i.get("name") for i in items]
    return items[0]


def _roots(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in starts_of(events) if e.get("parentRunId") is None]


@pytest.mark.usefixtures("legacy")
def test_index_construction_is_one_embed_run(traced_to_server: Any) -> None:
    F.build_index()

    events = delivered(traced_to_server)
    assert shape(events) == [("embed", "MockEmbedding", [])]  # node parsing and chunking folded
    end = finish(events, starts_of(events)[0]["runId"])
    assert end["input"] == [f"source: doc-{i}\n\n{text}" for i, text in enumerate(F.TEXTS)]
    assert end["output"] == {"embeddings": 3, "dimensions": 8}


def test_query(traced_to_server: Any, index: Any) -> None:
    answer = index.as_query_engine().query("What do cats do?")

    events = delivered(traced_to_server)
    assert shape(events)[1:] == LEGACY_QUERY_TREE  # after the index's embed run
    query = _roots(events)[1]
    assert query["input"] == "What do cats do?"
    assert finish(events, query["runId"])["output"] == str(answer)
    nodes = finish(events, _only(starts_of(events, "retriever"))["runId"])["output"]
    assert len(answer.source_nodes) == 2
    assert nodes == [
        {"id": n.node.node_id, "text": n.node.text, "score": n.score, "metadata": n.node.metadata}
        for n in answer.source_nodes
    ]
    llm = _only(starts_of(events, "llm"))
    assert "What do cats do?" in llm["input"][0]["content"]
    assert finish(events, llm["runId"])["output"] == {"role": "assistant", "content": str(answer)}


async def test_async_query(traced_to_server: Any, index: Any) -> None:
    await index.as_query_engine().aquery("What do cats do?")

    events = delivered(traced_to_server)
    assert shape(events)[1:] == LEGACY_QUERY_TREE  # acomplete -> complete folded into one llm run


def test_streaming_query_ends_after_the_stream_is_read(traced_to_server: Any, index: Any) -> None:
    response = index.as_query_engine(streaming=True).query("What do cats do?")
    text = "".join(response.response_gen)

    events = delivered(traced_to_server)
    assert shape(events)[1:] == LEGACY_QUERY_TREE  # the lazy LLM call nests under synthesize
    query, synth = starts_of(events, "chain")
    assert finish(events, query["runId"])["output"] == finish(events, synth["runId"])["output"] == text


@pytest.mark.usefixtures("legacy")
def test_streamed_llm_call_ending_after_its_trace_still_ends(traced_to_server: Any) -> None:
    stream = Settings.llm.stream_complete("hello")  # the 'completion' trace ends here
    last = list(stream)[-1]

    events = delivered(traced_to_server)
    llm = _only(starts_of(events))
    assert finish(events, llm["runId"])["output"] == {"role": "assistant", "content": last.text}


def test_unread_stream_is_closed_after_the_timeout(traced_to_server: Any) -> None:
    for _ in _register(CallbackHandler(stream_timeout=0.2)):
        Settings.llm.stream_complete("hello")
        time.sleep(0.6)
    events = delivered(traced_to_server)
    end = finish(events, _only(starts_of(events, "llm"))["runId"])
    assert end["metadata"]["streamAbandoned"] is True


def test_chat_engine_over_two_turns(traced_to_server: Any, index: Any) -> None:
    engine = index.as_chat_engine(chat_mode="condense_plus_context")
    engine.chat("What do cats do?")
    engine.chat("And dogs?")

    events = delivered(traced_to_server)
    # No event marks the chat call itself: its parts are roots, in order.
    turn = [
        ("retriever", "retrieve", [("embed", "MockEmbedding", [])]),
        ("chain", "synthesize", [("llm", "MockLLM", [])]),
    ]
    assert shape(events)[1:] == [*turn, ("llm", "MockLLM", []), *turn]
    synths = [e for e in starts_of(events) if e["name"] == "synthesize"]
    assert [s["input"] for s in synths] == ["What do cats do?", "And dogs?"]
    assert len(starts_of(events, "llm")) == 3


@pytest.mark.usefixtures("legacy")
async def test_function_agent_reports_its_llm_calls(traced_to_server: Any) -> None:
    agent = FunctionAgent(tools=F.weather_tools(), llm=F.tool_calling_llm())
    result = await agent.run(user_msg="weather in Paris?")
    assert str(result) == "Sunny in Paris; traffic unknown."

    events = delivered(traced_to_server)
    # Workflow agents emit only LLM events on the legacy path (no tool or step events).
    assert shape(events) == [("llm", "MockFunctionCallingLLM", [])] * 2
    first, second = starts_of(events)
    calls = finish(events, first["runId"])["output"]["toolCalls"]
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_traffic", {"city": "Paris"}),
    ]
    assert [t["function"]["name"] for t in first["params"]["tools"]] == ["get_weather", "get_traffic"]
    assert finish(events, second["runId"])["output"]["content"] == "Sunny in Paris; traffic unknown."


@pytest.mark.usefixtures("legacy")
async def test_react_agent_nested_llm_events_are_one_run(traced_to_server: Any) -> None:
    agent = ReActAgent(tools=F.weather_tools(), llm=F.ScriptedLLM(script=F.REACT_SCRIPT))
    await agent.run(user_msg="weather in Paris?")

    events = delivered(traced_to_server)
    llms = starts_of(events, "llm")
    assert len(llms) == 2  # each call is 3 nested LLM events
    assert [finish(events, e["runId"])["output"]["content"] for e in llms] == F.REACT_SCRIPT


def test_llm_error_inside_a_query(traced_to_server: Any, index: Any) -> None:
    llm = F.ScriptedLLM(script=["x"], fail_with=RuntimeError("llm down"))
    with pytest.raises(RuntimeError, match="llm down"):
        index.as_query_engine(llm=llm).query("What do cats do?")

    events = delivered(traced_to_server)
    errors = [e for e in events if e["event"] == "error"]
    names = {e["runId"]: e["name"] for e in starts_of(events)}
    assert [names[e["runId"]] for e in errors] == ["scripted-1", "synthesize", "query"]
    assert {e["error"]["message"] for e in errors} == {"RuntimeError: llm down"}
    assert [bool(e["error"].get("stack")) for e in errors] == [True, False, False]
    assert finish(events, _only(starts_of(events, "retriever"))["runId"])["event"] == "end"


async def test_twenty_concurrent_queries_keep_exact_parents(traced_to_server: Any, index: Any) -> None:
    engine = index.as_query_engine()
    questions = [f"question number {i}?" for i in range(20)]
    await asyncio.gather(*(engine.aquery(q) for q in questions))

    events = delivered(traced_to_server)
    queries = [e for e in _roots(events) if e["name"] == "query"]
    assert sorted(q["input"] for q in queries) == sorted(questions)
    for query in queries:
        assert shape(events, query["runId"]) == LEGACY_QUERY_TREE[0][2]
        retriever, synth = (e for e in starts_of(events) if e.get("parentRunId") == query["runId"])
        assert retriever["input"] == synth["input"] == query["input"]
        llm = _only([e for e in starts_of(events) if e.get("parentRunId") == synth["runId"]])
        assert query["input"] in llm["input"][0]["content"]


def _cyclic() -> dict[str, Any]:
    """Not JSON: a mapping that contains itself."""
    value: dict[str, Any] = {"name": "loop"}
    value["self"] = value
    return value


class _Exploding:
    """A payload value that defeats every attribute access."""

    def __getattribute__(self, name: str) -> Any:
        raise RuntimeError(f"cannot read {name}")


class _OddRetriever(BaseRetriever):
    """A custom retriever whose node metadata cannot be written as JSON."""

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [NodeWithScore(node=TextNode(text="Cats sleep.", metadata={"odd": _cyclic()}), score=1.0)]


def test_payloads_that_defeat_the_handler_do_not_break_the_query(
    traced_to_server: Any, legacy: CallbackHandler, caplog: pytest.LogCaptureFixture
) -> None:
    answer = RetrieverQueryEngine.from_args(_OddRetriever()).query("What do cats do?")
    assert str(answer)
    manager = Settings.callback_manager
    with caplog.at_level(logging.WARNING, logger="lunatrace"):
        for _ in range(2):
            with manager.event(CBEventType.QUERY, payload={EventPayload.QUERY_STR: _Exploding()}) as event:
                event.on_end(payload={EventPayload.RESPONSE: _Exploding()})

    events = delivered(traced_to_server)
    nodes = finish(events, _only(starts_of(events, "retriever"))["runId"])["output"]
    assert nodes[0]["metadata"]["odd"] == {"name": "loop", "self": "<cycle: dict>"}
    odd_queries = [e for e in starts_of(events) if e["name"] == "query" and "input" not in e]
    assert len(odd_queries) == 2
    assert all("output" not in finish(events, q["runId"]) for q in odd_queries)
    warnings = [r for r in caplog.records if "LlamaIndex" in r.getMessage()]
    assert len(warnings) == 2  # query input, query output: each once, not once per event


def test_tool_and_agent_step_events(traced_to_server: Any, legacy: CallbackHandler) -> None:
    manager = Settings.callback_manager
    tool = ToolMetadata(name="get_weather", description="Weather.")
    with (
        manager.as_trace("agent"),
        manager.event(CBEventType.AGENT_STEP, payload={"task": "weather?"}) as step,
    ):
        with manager.event(
            CBEventType.FUNCTION_CALL,
            payload={EventPayload.FUNCTION_CALL: '{"city": "Paris"}', EventPayload.TOOL: tool},
        ) as call:
            call.on_end(
                payload={
                    EventPayload.FUNCTION_OUTPUT: ToolOutput(
                        content="sunny", tool_name="get_weather", raw_input={}, raw_output="sunny"
                    )
                }
            )
        step.on_end(payload={EventPayload.RESPONSE: "It is sunny."})

    events = delivered(traced_to_server)
    assert shape(events) == [("agent", "agent_step", [("tool", "get_weather", [])])]
    agent, call_run = starts_of(events)
    assert agent["input"] == {"task": "weather?"}
    assert call_run["input"] == '{"city": "Paris"}'
    assert finish(events, call_run["runId"])["output"] == "sunny"
    assert finish(events, agent["runId"])["output"] == "It is sunny."


def test_exception_event_marks_the_enclosing_run(traced_to_server: Any, legacy: CallbackHandler) -> None:
    manager = Settings.callback_manager
    with manager.as_trace("query"), manager.event(CBEventType.QUERY, payload={EventPayload.QUERY_STR: "q"}):
        try:
            raise ValueError("reported by an event")
        except ValueError as exc:
            manager.on_event_start(CBEventType.EXCEPTION, payload={EventPayload.EXCEPTION: exc})

    events = delivered(traced_to_server)
    error = finish(events, _only(starts_of(events))["runId"])
    assert error["event"] == "error" and error["error"]["message"] == "ValueError: reported by an event"
    assert "raise ValueError" in error["error"]["stack"]


def test_failure_in_a_folded_event_marks_the_enclosing_run(
    traced_to_server: Any, legacy: CallbackHandler
) -> None:
    manager = Settings.callback_manager
    with (
        pytest.raises(ValueError, match="bad step"),
        manager.as_trace("query"),
        manager.event(CBEventType.QUERY, payload={EventPayload.QUERY_STR: "q"}),
        manager.event(CBEventType.TEMPLATING, payload={}),
    ):
        raise ValueError("bad step")

    events = delivered(traced_to_server)
    query = _only(starts_of(events))
    error = finish(events, query["runId"])
    assert error["event"] == "error" and error["error"]["message"] == "ValueError: bad step"
    assert "bad step" in error["error"]["stack"]


@pytest.mark.usefixtures("legacy")
def test_query_inside_a_traced_function(traced_to_server: Any) -> None:
    index = F.build_index()

    @lunatrace.trace(name="handle_request")
    def handle_request() -> str:
        return str(index.as_query_engine().query("What do cats do?"))

    handle_request()

    events = delivered(traced_to_server)
    assert shape(events)[1:] == [("chain", "handle_request", LEGACY_QUERY_TREE)]


def test_with_instrument_active_each_run_is_reported_once(traced_to_server: Any, index: Any) -> None:
    instrument()
    try:
        index.as_query_engine().query("What do cats do?")
    finally:
        uninstrument()

    events = delivered(traced_to_server)
    assert shape(events)[1:] == [
        (
            "chain",
            "RetrieverQueryEngine",
            [
                ("retriever", "VectorIndexRetriever", [("embed", "MockEmbedding", [])]),
                ("chain", "CompactAndRefine", [("llm", "MockLLM", [])]),
            ],
        )
    ]


def test_provider_usage_and_model_version(traced_to_server: Any, index: Any) -> None:
    index.as_query_engine(llm=F.ScriptedLLM(script=["Cats sleep."])).query("What do cats do?")

    events = delivered(traced_to_server)
    llm = _only(starts_of(events, "llm"))
    assert llm["name"] == "scripted-1"
    end = finish(events, llm["runId"])
    assert end["tokensUsage"] == {"prompt": 11, "completion": 7}
    assert end["metadata"] == {"responseModel": "scripted-1-2026"}
    assert end["output"] == {"role": "assistant", "content": "Cats sleep."}


def test_queries_from_a_thread_pool_keep_exact_parents(traced_to_server: Any, index: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    engine = index.as_query_engine()
    questions = [f"threaded question {i}?" for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(engine.query, questions))

    events = delivered(traced_to_server)
    queries = [e for e in _roots(events) if e["name"] == "query"]
    assert sorted(q["input"] for q in queries) == sorted(questions)
    for query in queries:
        assert shape(events, query["runId"]) == LEGACY_QUERY_TREE[0][2]
        synth = next(
            e for e in starts_of(events) if e.get("parentRunId") == query["runId"] and e["type"] == "chain"
        )
        llm = _only([e for e in starts_of(events) if e.get("parentRunId") == synth["runId"]])
        assert query["input"] in llm["input"][0]["content"]
