"""LangChain payloads other SDKs' suites check, and what users of the official handler rely on."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from pydantic import BaseModel

import lunatrace
from lunatrace.core.transport import MemorySink
from lunatrace.integrations.langchain import CallbackHandler
from tests.integrations.lc_fakes import FakeToolChatModel
from tests.support.trees import by_name, children, end_of

PROMPT = ChatPromptTemplate.from_messages([("human", "{q}")])


# --- payloads ------------------------------------------------------------------------------


def test_a_malformed_tool_call_keeps_its_raw_arguments_and_its_error(events_of: Any) -> None:
    broken = AIMessage(
        content="",
        invalid_tool_calls=[
            {"name": "get_weather", "args": '{"city": "Par', "id": "call-1", "error": "Unterminated string"}
        ],
    )
    model = FakeToolChatModel(messages=iter([broken]))
    model.invoke("weather in Paris?", config={"callbacks": [CallbackHandler()]})
    (llm,) = [e for e in events_of() if e["event"] == "end" and e["type"] == "llm"]
    assert llm["output"]["toolCalls"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Par'},
            "id": "call-1",
            "error": "Unterminated string",
        }
    ]


def test_a_malformed_call_beside_a_good_one_keeps_both(events_of: Any) -> None:
    message = AIMessage(
        content="checking",
        tool_calls=[{"name": "lookup", "args": {"q": "x"}, "id": "ok-1", "type": "tool_call"}],
        invalid_tool_calls=[{"name": "lookup", "args": "not json", "id": "bad-1", "error": None}],
    )
    FakeToolChatModel(messages=iter([message])).invoke("go", config={"callbacks": [CallbackHandler()]})
    (llm,) = [e for e in events_of() if e["event"] == "end" and e["type"] == "llm"]
    calls = llm["output"]["toolCalls"]
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [
        ("ok-1", '{"q": "x"}'),
        ("bad-1", "not json"),
    ]
    assert "error" not in calls[0] and calls[1]["error"] == "invalid tool call"


@pytest.mark.parametrize(
    ("given", "text"),
    [
        ({"messages": [("human", "from a tuple")]}, "from a tuple"),
        ({"messages": [{"role": "user", "content": "from a dict"}]}, "from a dict"),
        (
            {"messages": [{"type": "human", "content": [{"type": "text", "text": "from parts"}]}]},
            "from parts",
        ),
        ("a plain string", "a plain string"),
    ],
)
def test_a_thread_records_the_users_text_whatever_the_message_form(
    events_of: Any, given: Any, text: str
) -> None:
    thread = lunatrace.open_thread(tags=["support"])
    handler = CallbackHandler(thread=thread)
    RunnableLambda(lambda state: "an answer", name="bot").invoke(given, config={"callbacks": [handler]})
    messages = [e["message"] for e in events_of() if e["event"] == "chat"]
    assert messages == [{"role": "user", "content": text}, {"role": "assistant", "content": "an answer"}]


# --- cancellation ---------------------------------------------------------------------------


async def test_a_cancelled_run_ends_as_cancelled_not_as_an_error(events_of: Any) -> None:
    started = asyncio.Event()

    async def slow(q: Any) -> str:
        started.set()
        await asyncio.sleep(10)
        return "never"

    chain = PROMPT | RunnableLambda(slow, name="slow")
    task = asyncio.create_task(chain.ainvoke({"q": "hi"}, config={"callbacks": [CallbackHandler()]}))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    events = events_of()
    assert [e for e in events if e["event"] == "error"] == []
    (root,) = children(events, None)
    (step,) = by_name(events, "slow")
    for run in (root, step):
        end = end_of(events, run["runId"])
        assert end["event"] == "end" and end["metadata"]["cancelled"] is True


async def test_a_cancelled_traced_function_ends_as_cancelled(events_of: Any) -> None:
    @lunatrace.trace(name="waits")
    async def waits() -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(waits())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (run,) = by_name(events_of(), "waits")
    end = end_of(events_of(), run["runId"])
    assert end["event"] == "end" and end["metadata"] == {"cancelled": True}


# --- what users of the official handler rely on -----------------------------------------


def test_agent_name_metadata_makes_the_outermost_run_an_agent(events_of: Any) -> None:
    inner = RunnableLambda(lambda x: x, name="step")
    chain = RunnableLambda(lambda x: inner.invoke(x), name="outer")
    chain.invoke(1, config={"callbacks": [CallbackHandler()], "metadata": {"agent_name": "support-bot"}})
    events = events_of()
    starts = [e for e in events if e["event"] == "start"]
    assert [(e["type"], e["name"]) for e in starts] == [("agent", "support-bot"), ("chain", "step")]
    assert all(e["metadata"]["agentName"] == "support-bot" for e in starts)  # as the server keeps it


def test_model_name_metadata_names_the_llm_run(events_of: Any) -> None:
    model = FakeToolChatModel(messages=iter(["hi"]))
    model.invoke("q", config={"callbacks": [CallbackHandler()], "metadata": {"model_name": "gpt-4o-mini"}})
    (llm,) = [e for e in events_of() if e["event"] == "start" and e["type"] == "llm"]
    assert llm["name"] == "gpt-4o-mini"


def test_last_trace_id_names_the_latest_root_of_each_thread_and_task(memory_sink: MemorySink) -> None:
    handler = CallbackHandler()
    assert handler.last_trace_id is None
    chain = PROMPT | FakeToolChatModel(messages=iter(["a", "b", "c"]))
    chain.invoke({"q": "1"}, config={"callbacks": [handler]})
    roots = [e["runId"] for e in memory_sink.events if e["event"] == "start" and "parentRunId" not in e]
    assert handler.last_trace_id == roots[-1]

    async def in_a_task() -> str | None:
        await chain.ainvoke({"q": "2"}, config={"callbacks": [handler]})
        return handler.last_trace_id

    from_task = asyncio.run(in_a_task())
    roots = [e["runId"] for e in memory_sink.events if e["event"] == "start" and "parentRunId" not in e]
    assert from_task == roots[-1] != roots[0]
    assert handler.last_trace_id == roots[0]  # the task's root is the task's own


def test_last_trace_id_of_a_graph_and_feedback_sent_to_it(events_of: Any) -> None:
    builder = StateGraph(MessagesState)
    builder.add_node("reply", lambda state: {"messages": [AIMessage(content="hello")]})
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    handler = CallbackHandler()
    builder.compile().invoke({"messages": [("human", "hi")]}, config={"callbacks": [handler]})
    trace_id = handler.last_trace_id
    assert trace_id is not None and uuid.UUID(trace_id)
    assert lunatrace.feedback(trace_id, thumb="up")
    events = events_of()
    (root,) = children(events, None)
    assert root["runId"] == trace_id
    (feedback,) = [e for e in events if e["event"] == "feedback"]
    assert feedback["runId"] == trace_id and json.dumps(feedback["feedback"]) == '{"thumb": "up"}'


class LookUp(BaseModel):
    """Look a word up in the dictionary."""

    word: str


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def local_time(city: str) -> str:
    """The local time in a city."""
    return "noon"


def test_tools_bound_in_any_form_are_sent_as_openai_function_schemas(events_of: Any) -> None:
    bare = {
        "name": "search",
        "description": "Search the web.",
        "parameters": {"type": "object", "properties": {}},
    }
    provider_tool = {"type": "web_search_preview"}
    model = FakeToolChatModel(messages=iter(["done"])).bind(
        tools=[get_weather, local_time, LookUp, bare, provider_tool]
    )
    model.invoke("q", config={"callbacks": [CallbackHandler()]})
    (llm,) = [e for e in events_of() if e["event"] == "start" and e["type"] == "llm"]
    tools = llm["params"]["tools"]
    assert [t["type"] for t in tools] == ["function"] * 4 + ["web_search_preview"]
    assert [t["function"]["name"] for t in tools[:4]] == ["get_weather", "local_time", "LookUp", "search"]
    assert tools[0]["function"]["parameters"]["properties"]["city"]["type"] == "string"
    assert tools[2]["function"]["description"] == "Look a word up in the dictionary."
