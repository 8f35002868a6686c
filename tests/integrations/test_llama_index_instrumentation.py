"""LlamaIndex through ``instrument()``: real LlamaIndex objects with its own mock models,
delivered over HTTP to a fake Lunary server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.tools import FunctionTool

import lunatrace
from lunatrace.integrations.llama_index import instrument, is_active, uninstrument
from tests.integrations import li_fakes as F
from tests.integrations.li_fakes import delivered, finish, shape, starts_of

F.use_mock_models()
INDEX = F.build_index()

QUERY_TREE = [
    (
        "chain",
        "RetrieverQueryEngine",
        [
            ("retriever", "VectorIndexRetriever", [("embed", "MockEmbedding", [])]),
            ("chain", "CompactAndRefine", [("llm", "MockLLM", [])]),
        ],
    )
]


@pytest.fixture
def instrumented() -> Iterator[None]:
    instrument()
    yield
    uninstrument()


def _only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, [i.get("name") for i in items]
    return items[0]


@pytest.mark.usefixtures("instrumented")
def test_index_construction_is_one_embed_run(traced_to_server: Any) -> None:
    F.build_index()

    events = delivered(traced_to_server)
    assert shape(events) == [("embed", "MockEmbedding", [])]  # the splitter spans are folded
    embed = _only(starts_of(events))
    assert embed["input"] == [f"source: doc-{i}\n\n{text}" for i, text in enumerate(F.TEXTS)]
    assert finish(events, embed["runId"])["output"] == {"embeddings": 3, "dimensions": 8}


@pytest.mark.usefixtures("instrumented")
def test_query_is_one_tree_with_one_llm_run(traced_to_server: Any) -> None:
    answer = INDEX.as_query_engine().query("What do cats do?")

    events = delivered(traced_to_server)
    assert shape(events) == QUERY_TREE
    query = starts_of(events, "chain")[0]
    assert query["input"] == "What do cats do?"
    assert finish(events, query["runId"])["output"] == str(answer)
    retriever = _only(starts_of(events, "retriever"))
    nodes = finish(events, retriever["runId"])["output"]
    assert len(answer.source_nodes) == 2
    assert nodes == [
        {"id": n.node.node_id, "text": n.node.text, "score": n.score, "metadata": n.node.metadata}
        for n in answer.source_nodes
    ]
    llm = _only(starts_of(events, "llm"))
    assert llm["params"] == {"maxTokens": 6}
    assert llm["input"][0]["role"] == "user" and "What do cats do?" in llm["input"][0]["content"]
    llm_end = finish(events, llm["runId"])
    assert llm_end["output"] == {"role": "assistant", "content": str(answer)}
    # MockLLM reports no usage: an estimate, flagged as one.
    assert llm_end["tokensUsage"]["prompt"] > 10 and llm_end["metadata"]["tokensEstimated"] is True


@pytest.mark.usefixtures("instrumented")
def test_provider_usage_model_and_params_of_a_custom_llm(traced_to_server: Any) -> None:
    llm = F.ScriptedLLM(script=["Cats sleep."])
    INDEX.as_query_engine(llm=llm).query("What do cats do?")

    events = delivered(traced_to_server)
    start = _only(starts_of(events, "llm"))
    assert start["name"] == "scripted-1"
    assert start["params"] == {"temperature": 0.3, "maxTokens": 64}
    end = finish(events, start["runId"])
    assert end["tokensUsage"] == {"prompt": 11, "completion": 7}
    assert end["metadata"] == {"responseModel": "scripted-1-2026"}
    assert end["output"] == {"role": "assistant", "content": "Cats sleep."}


@pytest.mark.usefixtures("instrumented")
async def test_async_query_collapses_acomplete_into_one_llm_run(traced_to_server: Any) -> None:
    await INDEX.as_query_engine().aquery("What do cats do?")

    events = delivered(traced_to_server)
    assert shape(events) == QUERY_TREE  # acomplete -> complete: one llm run


@pytest.mark.usefixtures("instrumented")
def test_streaming_query_nests_the_lazy_llm_call_and_ends_with_the_full_answer(traced_to_server: Any) -> None:
    response = INDEX.as_query_engine(streaming=True).query("What do cats do?")
    tokens = list(response.response_gen)

    events = delivered(traced_to_server)
    assert shape(events) == QUERY_TREE
    query, synth = starts_of(events, "chain")
    assert finish(events, query["runId"])["output"] == "".join(tokens)
    assert finish(events, synth["runId"])["output"] == "".join(tokens)
    llm_end = finish(events, _only(starts_of(events, "llm"))["runId"])
    # The completion LlamaIndex reports at the end: MockLLM's last text lags its deltas by one word.
    assert llm_end["output"] == {"role": "assistant", "content": " ".join(["text"] * 5)}
    # The chains end once the stream is read, after their llm run.
    assert events.index(llm_end) < events.index(finish(events, query["runId"]))


def test_unread_streams_are_closed_after_the_timeout(traced_to_server: Any) -> None:
    instrument(stream_timeout=0.2)
    try:
        INDEX.as_query_engine(streaming=True).query("What do cats do?")
        F.Settings.llm.stream_complete("hello")  # an LLM stream nobody reads
        time.sleep(0.6)
        events = delivered(traced_to_server)
    finally:
        uninstrument()
    by_id = {e["runId"]: e for e in starts_of(events)}
    abandoned = [
        by_id[e["runId"]]
        for e in events
        if e["event"] == "end" and e.get("metadata", {}).get("streamAbandoned")
    ]
    # The query, its synthesizer and the direct llm stream (and, on LlamaIndex releases
    # that create the query's LLM stream eagerly, that llm run too).
    assert sorted(e["name"] for e in abandoned if e["type"] == "chain") == [
        "CompactAndRefine",
        "RetrieverQueryEngine",
    ]
    direct = [e for e in abandoned if e["type"] == "llm" and e.get("parentRunId") is None]
    assert [(e["name"], e["input"]) for e in direct] == [("MockLLM", [{"role": "user", "content": "hello"}])]


@pytest.mark.usefixtures("instrumented")
async def test_astream_chat_three_layers_are_one_llm_run(traced_to_server: Any) -> None:
    llm = F.ScriptedLLM(script=["one two three"])
    stream = await llm.astream_chat([ChatMessage(role="user", content="count")])
    chunks = [chunk.delta async for chunk in stream]

    events = delivered(traced_to_server)
    assert shape(events) == [("llm", "scripted-1", [])]  # astream_chat -> stream_chat -> stream_complete
    start = starts_of(events)[0]
    assert start["input"] == [{"role": "user", "content": "count"}]
    assert finish(events, start["runId"])["output"] == {"role": "assistant", "content": "".join(chunks)}


@pytest.mark.usefixtures("instrumented")
def test_chat_engine_over_two_turns(traced_to_server: Any) -> None:
    engine = INDEX.as_chat_engine(chat_mode="condense_plus_context")
    engine.chat("What do cats do?")
    engine.chat("And dogs?")

    events = delivered(traced_to_server)
    first, second = shape(events)
    assert first == (
        "chain",
        "CondensePlusContextChatEngine",
        [
            ("retriever", "VectorIndexRetriever", [("embed", "MockEmbedding", [])]),
            ("chain", "CompactAndRefine", [("llm", "MockLLM", [])]),
        ],
    )
    # Turn two condenses the history into a standalone question first.
    assert second[2][0] == ("llm", "MockLLM", [])
    assert second[2][1:] == first[2]
    assert [e["input"] for e in starts_of(events) if e.get("parentRunId") is None] == [
        "What do cats do?",
        "And dogs?",
    ]


def _function_agent() -> FunctionAgent:
    return FunctionAgent(tools=F.weather_tools(), llm=F.tool_calling_llm())


@pytest.mark.usefixtures("instrumented")
async def test_function_agent_with_a_failing_tool(traced_to_server: Any) -> None:
    result = await _function_agent().run(user_msg="weather in Paris?")
    assert str(result) == "Sunny in Paris; traffic unknown."

    events = delivered(traced_to_server)
    agent = _only([e for e in starts_of(events) if e.get("parentRunId") is None])
    assert (agent["type"], agent["name"], agent["input"]) == ("agent", "FunctionAgent", "weather in Paris?")
    assert finish(events, agent["runId"])["event"] == "end"  # the agent carried on
    assert finish(events, agent["runId"])["output"]["content"] == "Sunny in Paris; traffic unknown."
    steps = [e for e in events if e["event"] == "start" and e.get("parentRunId") == agent["runId"]]
    assert {s["type"] for s in steps} == {"chain"}
    assert [s["name"] for s in steps][:3] == ["init_run", "setup_agent", "run_agent_step"]

    weather, traffic = starts_of(events, "tool")
    assert (weather["name"], weather["input"]) == ("get_weather", {"city": "Paris"})
    assert finish(events, weather["runId"])["output"] == "sunny in Paris"
    failed = finish(events, traffic["runId"])
    assert failed["event"] == "error" and failed["error"]["message"] == "ValueError: traffic API down"
    assert "get_traffic" in failed["error"]["stack"]
    assert [e for e in events if e["event"] == "error"] == [failed]  # the tool run only

    first_llm, second_llm = starts_of(events, "llm")
    assert [t["function"]["name"] for t in first_llm["params"]["tools"]] == ["get_weather", "get_traffic"]
    calls = finish(events, first_llm["runId"])["output"]["toolCalls"]
    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("call-w", "get_weather", {"city": "Paris"}),
        ("call-t", "get_traffic", {"city": "Paris"}),
    ]
    tool_messages = [m for m in second_llm["input"] if m["role"] == "tool"]
    assert {m["toolCallId"] for m in tool_messages} == {"call-w", "call-t"}
    # Each llm and tool run sits under the step that made it.
    by_id = {e["runId"]: e for e in starts_of(events)}
    assert {by_id[e["parentRunId"]]["name"] for e in starts_of(events, "llm")} == {"run_agent_step"}
    assert {by_id[e["parentRunId"]]["name"] for e in starts_of(events, "tool")} == {"call_tool"}


@pytest.mark.usefixtures("instrumented")
async def test_react_agent_has_one_llm_run_per_call(traced_to_server: Any) -> None:
    agent = ReActAgent(tools=F.weather_tools(), llm=F.ScriptedLLM(script=F.REACT_SCRIPT))
    result = await agent.run(user_msg="weather in Paris?")
    assert "sunny in Paris" in str(result)

    events = delivered(traced_to_server)
    llms = starts_of(events, "llm")
    assert len(llms) == 2  # not 6: each call is astream_chat -> stream_chat -> stream_complete
    outputs = [finish(events, e["runId"])["output"]["content"] for e in llms]
    assert outputs == F.REACT_SCRIPT
    tool = _only(starts_of(events, "tool"))
    assert (tool["name"], tool["input"]) == ("get_weather", {"city": "Paris"})
    assert finish(events, tool["runId"])["output"] == "sunny in Paris"
    root = _only([e for e in starts_of(events) if e.get("parentRunId") is None])
    assert (root["type"], root["name"]) == ("agent", "ReActAgent")


@pytest.mark.usefixtures("instrumented")
def test_llm_error_inside_a_query_reports_the_stack_once(traced_to_server: Any) -> None:
    llm = F.ScriptedLLM(script=["x"], fail_with=RuntimeError("llm down"))
    with pytest.raises(RuntimeError, match="llm down"):
        INDEX.as_query_engine(llm=llm).query("What do cats do?")

    events = delivered(traced_to_server)
    errors = [e for e in events if e["event"] == "error"]
    by_id = {e["runId"]: e for e in starts_of(events)}
    assert [by_id[e["runId"]]["type"] for e in errors] == ["llm", "chain", "chain"]  # llm, synth, query
    assert {e["error"]["message"] for e in errors} == {"RuntimeError: llm down"}
    assert "llm down" in errors[0]["error"]["stack"] and "_next" in errors[0]["error"]["stack"]
    assert [bool(e["error"].get("stack")) for e in errors] == [True, False, False]
    retriever = _only(starts_of(events, "retriever"))
    assert finish(events, retriever["runId"])["event"] == "end"


@pytest.mark.usefixtures("instrumented")
async def test_twenty_concurrent_queries_keep_exact_parents(traced_to_server: Any) -> None:
    engine = INDEX.as_query_engine()
    questions = [f"question number {i}?" for i in range(20)]
    await asyncio.gather(*(engine.aquery(q) for q in questions))

    events = delivered(traced_to_server)
    roots = [e for e in starts_of(events) if e.get("parentRunId") is None]
    assert sorted(r["input"] for r in roots) == sorted(questions)
    for root in roots:
        question = root["input"]
        assert shape(events, root["runId"]) == QUERY_TREE[0][2]
        retriever, synth = (e for e in starts_of(events) if e.get("parentRunId") == root["runId"])
        assert retriever["input"] == synth["input"] == question
        embed = _only([e for e in starts_of(events) if e.get("parentRunId") == retriever["runId"]])
        assert embed["input"] == question
        llm = _only([e for e in starts_of(events) if e.get("parentRunId") == synth["runId"]])
        assert question in llm["input"][0]["content"]


@pytest.mark.usefixtures("instrumented")
def test_query_inside_a_traced_function_and_traced_function_inside_a_tool(traced_to_server: Any) -> None:
    @lunatrace.trace(name="lookup")
    def lookup(city: str) -> str:
        return f"{city}: 3 parks"

    def parks(city: str) -> str:
        """Parks of a city."""
        return lookup(city)

    @lunatrace.trace(name="handle_request")
    def handle_request() -> str:
        INDEX.as_query_engine().query("What do cats do?")
        return str(FunctionTool.from_defaults(parks).call(city="Lyon"))

    handle_request()

    events = delivered(traced_to_server)
    assert shape(events) == [
        ("chain", "handle_request", [*QUERY_TREE, ("tool", "parks", [("chain", "lookup", [])])]),
    ]


@pytest.mark.usefixtures("instrumented")
def test_query_under_a_thread_message(traced_to_server: Any) -> None:
    thread = lunatrace.open_thread()
    message_id = thread.track_message("user", "What do cats do?")
    with lunatrace.parent(message_id):
        INDEX.as_query_engine().query("What do cats do?")

    events = delivered(traced_to_server, allow_parents=[thread.id, message_id])
    assert shape(events, message_id) == QUERY_TREE


def test_instrument_is_idempotent_and_uninstrument_stops_tracing(traced_to_server: Any) -> None:
    dispatcher = get_dispatcher()
    handlers_before = len(dispatcher.span_handlers), len(dispatcher.event_handlers)
    instrument()
    instrument()
    assert is_active()
    assert len(dispatcher.span_handlers) == handlers_before[0] + 1
    assert len(dispatcher.event_handlers) == handlers_before[1] + 1
    INDEX.as_query_engine().query("What do cats do?")
    uninstrument()
    uninstrument()
    assert not is_active()
    assert (len(dispatcher.span_handlers), len(dispatcher.event_handlers)) == handlers_before
    INDEX.as_query_engine().query("What do cats do?")

    events = delivered(traced_to_server)
    assert shape(events) == QUERY_TREE  # one query traced, once


def test_unknown_option_is_refused() -> None:
    with pytest.raises(TypeError, match="stream_timout"):
        instrument(stream_timout=3)
    assert not is_active()


@pytest.mark.usefixtures("instrumented")
def test_query_inside_a_langchain_tool_nests_under_it(traced_to_server: Any) -> None:
    from langchain_core.tools import tool

    from lunatrace.integrations.langchain import CallbackHandler

    @tool
    def ask_docs(question: str) -> str:
        """Answer from the documents."""
        return str(INDEX.as_query_engine().query(question))

    ask_docs.invoke({"question": "What do cats do?"}, config={"callbacks": [CallbackHandler()]})

    events = delivered(traced_to_server)
    assert shape(events) == [("tool", "ask_docs", QUERY_TREE)]


@pytest.mark.usefixtures("instrumented")
async def test_async_streaming_query_nests_and_ends_with_the_full_answer(traced_to_server: Any) -> None:
    response = await INDEX.as_query_engine(streaming=True).aquery("What do cats do?")
    text = "".join([token async for token in response.async_response_gen()])

    events = delivered(traced_to_server)
    assert shape(events) == QUERY_TREE
    query, synth = starts_of(events, "chain")
    assert finish(events, query["runId"])["output"] == finish(events, synth["runId"])["output"] == text


class _Opaque:
    """An argument no encoder can print."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.usefixtures("instrumented")
def test_unprintable_tool_arguments_do_not_break_the_call(traced_to_server: Any) -> None:
    def describe(item: Any) -> str:
        """Describe an item."""
        return "an item"

    output = FunctionTool.from_defaults(describe).call(item=_Opaque())
    assert output.content == "an item"

    events = delivered(traced_to_server)
    tool = _only(starts_of(events, "tool"))
    assert tool["input"] == {"item": "<_Opaque>"}
    assert finish(events, tool["runId"])["output"] == "an item"


@pytest.mark.usefixtures("instrumented")
def test_streaming_chat_engine_ends_when_the_stream_is_read(traced_to_server: Any) -> None:
    engine = INDEX.as_chat_engine(chat_mode="condense_plus_context")
    response = engine.stream_chat("What do cats do?")
    text = "".join(response.response_gen)
    # LlamaIndex reads the LLM stream on its own thread; the runs end when that read does.
    writer = getattr(response, "write_response_to_history_thread", None)
    if writer is not None:
        writer.join(5)

    events = delivered(traced_to_server)
    assert shape(events) == [
        (
            "chain",
            "CondensePlusContextChatEngine",
            [
                ("retriever", "VectorIndexRetriever", [("embed", "MockEmbedding", [])]),
                ("chain", "CompactAndRefine", [("llm", "MockLLM", [])]),
            ],
        )
    ]
    chat = starts_of(events)[0]
    assert finish(events, chat["runId"])["output"] == text


@pytest.mark.usefixtures("instrumented")
async def test_async_streaming_chat_engine_ends_when_the_stream_is_read(traced_to_server: Any) -> None:
    engine = INDEX.as_chat_engine(chat_mode="condense_plus_context")
    response = await engine.astream_chat("What do cats do?")
    text = "".join([token async for token in response.async_response_gen()])
    if response.awrite_response_to_history_task is not None:
        await response.awrite_response_to_history_task

    events = delivered(traced_to_server)
    chat = _only([e for e in starts_of(events) if e.get("parentRunId") is None])
    assert chat["name"] == "CondensePlusContextChatEngine"
    assert finish(events, chat["runId"])["output"] == text
    assert len(starts_of(events, "llm")) == 1


@pytest.mark.usefixtures("instrumented")
def test_queries_from_a_thread_pool_keep_exact_parents(traced_to_server: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    engine = INDEX.as_query_engine()
    questions = [f"threaded question {i}?" for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(engine.query, questions))

    events = delivered(traced_to_server)
    roots = [e for e in starts_of(events) if e.get("parentRunId") is None]
    assert sorted(r["input"] for r in roots) == sorted(questions)
    for root in roots:
        assert shape(events, root["runId"]) == QUERY_TREE[0][2]
        synth = next(
            e for e in starts_of(events) if e.get("parentRunId") == root["runId"] and e["type"] == "chain"
        )
        llm = _only([e for e in starts_of(events) if e.get("parentRunId") == synth["runId"]])
        assert root["input"] in llm["input"][0]["content"]
