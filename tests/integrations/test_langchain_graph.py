"""LangGraph graphs and create_agent agents traced through the real delivery path."""

from __future__ import annotations

import json
import operator
from typing import Annotated, Any, TypedDict

import pytest
from langchain.agents import create_agent
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from lunatrace.integrations.langchain import CallbackHandler
from tests.integrations.lc_fakes import (
    AGENT_ROOT_TYPE,
    FakeToolChatModel,
    approval_graph,
    tool_call_id,
    tool_call_message,
)
from tests.support.trees import assert_valid_tree, by_name, children, end_of


@tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return f"22C and sunny in {city}"


@tool
def get_time(city: str) -> str:
    """Get the local time of a city."""
    return f"noon in {city}"


@tool
def broken(city: str) -> str:
    """Always fails."""
    raise ValueError(f"no data for {city}")


def two_tool_agent(*replies: Any, tools: list[Any] | None = None) -> Any:
    model = FakeToolChatModel(messages=iter(replies))
    return create_agent(
        model, tools=tools or [get_weather, get_time], system_prompt="Be brief.", name="weather_agent"
    )


def test_create_agent_with_two_tools(events_of: Any) -> None:
    first = tool_call_message("get_weather", {"city": "Paris"}, "call_1")
    first.tool_calls.append(
        {"name": "get_time", "args": {"city": "Paris"}, "id": "call_2", "type": "tool_call"}
    )
    agent = two_tool_agent(first, "Sunny, and it is noon.")
    result = agent.invoke(
        {"messages": [("human", "weather and time in Paris?")]}, config={"callbacks": [CallbackHandler()]}
    )
    assert result["messages"][-1].content == "Sunny, and it is noon."
    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    assert root["type"] == AGENT_ROOT_TYPE and root["name"] == "weather_agent"
    assert root["input"] == {"messages": [{"role": "user", "content": "weather and time in Paris?"}]}
    nodes = children(events, root["runId"])
    assert [n["name"] for n in nodes] == ["model", "tools", "tools", "model"]
    assert all(n["type"] == "chain" for n in nodes)
    assert [n["metadata"]["langgraphNode"] for n in nodes] == ["model", "tools", "tools", "model"]
    assert [n["metadata"]["langgraphStep"] for n in nodes] == [1, 2, 2, 3]
    tools = [e for e in events if e["event"] == "start" and e["type"] == "tool"]
    assert sorted((t["name"], tool_call_id(events, t)) for t in tools) == [
        ("get_time", "call_2"),
        ("get_weather", "call_1"),
    ]
    for run in tools:
        assert run["input"] == {"city": "Paris"}
        assert run["parentRunId"] in {n["runId"] for n in nodes if n["name"] == "tools"}
    assert end_of(events, by_name(events, "get_weather")[0]["runId"])["output"] == "22C and sunny in Paris"
    llms = [e for e in events if e["event"] == "start" and e["type"] == "llm"]
    assert [llm["parentRunId"] for llm in llms] == [nodes[0]["runId"], nodes[3]["runId"]]
    second_input = llms[1]["input"]
    assert [m["role"] for m in second_input] == ["system", "user", "assistant", "tool", "tool"]
    assert second_input[2]["toolCalls"][1]["function"] == {
        "name": "get_time",
        "arguments": '{"city": "Paris"}',
    }
    assert {m.get("toolCallId") for m in second_input[3:]} == {"call_1", "call_2"}
    assert end_of(events, llms[0]["runId"])["tokensUsage"] == {"prompt": 12, "completion": 7}
    final = end_of(events, root["runId"])["output"]["messages"]
    assert final[-1]["role"] == "assistant" and final[-1]["content"] == "Sunny, and it is noon."


def test_agent_tool_error_fails_tool_node_and_agent(events_of: Any) -> None:
    agent = two_tool_agent(tool_call_message("broken", {"city": "Oslo"}, "call_9"), "never", tools=[broken])
    with pytest.raises(ValueError, match="no data for Oslo"):
        agent.invoke({"messages": [("human", "x")]}, config={"callbacks": [CallbackHandler()]})
    events = events_of()
    assert_valid_tree(events)
    tool_run = by_name(events, "broken")[0]
    assert tool_call_id(events, tool_run) in ("call_9", None)  # older releases: only on success
    for run in (tool_run, by_name(events, "tools")[0], children(events, None)[0]):
        assert end_of(events, run["runId"])["error"]["message"] == "ValueError: no data for Oslo"


class Counter(TypedDict):
    x: int
    log: Annotated[list[str], operator.add]


def test_two_node_state_graph(events_of: Any) -> None:
    builder = StateGraph(Counter)
    builder.add_node("a", lambda s: {"x": s["x"] + 1, "log": ["a"]})
    builder.add_node("b", lambda s: {"x": s["x"] * 10, "log": ["b"]})
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", END)
    graph = builder.compile(name="two_node_graph")
    assert graph.invoke({"x": 1, "log": []}, config={"callbacks": [CallbackHandler()]}) == {
        "x": 20,
        "log": ["a", "b"],
    }
    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    assert root["name"] == "two_node_graph" and root["type"] == "chain"
    a, b = children(events, root["runId"])
    assert (a["name"], a["metadata"]["langgraphStep"], b["name"], b["metadata"]["langgraphStep"]) == (
        "a",
        1,
        "b",
        2,
    )
    assert a["input"] == {"x": 1, "log": []}
    assert end_of(events, a["runId"])["output"] == {"x": 2, "log": ["a"]}
    assert end_of(events, root["runId"])["output"] == {"x": 20, "log": ["a", "b"]}


def test_subgraph_and_parallel_branches(events_of: Any) -> None:
    sub = StateGraph(Counter)
    sub.add_node("inner", lambda s: {"x": s["x"] + 100, "log": ["inner"]})
    sub.add_edge(START, "inner")
    sub.add_edge("inner", END)
    subgraph = sub.compile(name="sub")

    builder = StateGraph(Counter)
    builder.add_node("fan_left", lambda s: {"log": ["left"]})
    builder.add_node("fan_right", lambda s: {"log": ["right"]})
    builder.add_node("nested", subgraph)
    builder.add_edge(START, "fan_left")
    builder.add_edge(START, "fan_right")
    builder.add_edge(["fan_left", "fan_right"], "nested")
    builder.add_edge("nested", END)
    graph = builder.compile(name="outer")
    result = graph.invoke({"x": 0, "log": []}, config={"callbacks": [CallbackHandler()]})
    assert result["x"] == 100 and sorted(result["log"][:2]) == ["left", "right"]
    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    nodes = children(events, root["runId"])
    assert sorted(n["name"] for n in nodes[:2]) == ["fan_left", "fan_right"]
    assert {n["metadata"]["langgraphStep"] for n in nodes[:2]} == {1}
    nested = nodes[2]
    assert nested["name"] == "nested" and nested["metadata"]["langgraphStep"] == 2
    sub_nodes = [e for e in events if e["event"] == "start" and e["name"] == "inner"]
    assert len(sub_nodes) == 1
    # The subgraph's run sits under the "nested" node; "inner" is inside it.
    chain = [sub_nodes[0]]
    starts = {e["runId"]: e for e in events if e["event"] == "start"}
    while chain[-1].get("parentRunId"):
        chain.append(starts[chain[-1]["parentRunId"]])
    assert [c["runId"] for c in chain][-2:] == [nested["runId"], root["runId"]]


def test_interrupt_then_resume(events_of: Any) -> None:
    graph = approval_graph()
    handler = CallbackHandler()
    config: Any = {"callbacks": [handler], "configurable": {"thread_id": "t-1"}}
    paused = graph.invoke({"request": "refund"}, config=config)
    assert "__interrupt__" in paused
    resumed = graph.invoke(Command(resume="yes"), config=config)
    assert resumed["answer"] == "yes"
    events = events_of()
    assert_valid_tree(events)
    assert not [e for e in events if e["event"] == "error"]
    (first,) = children(events, None)
    # The resumed run continues the paused one's story: it is filed under it.
    (second,) = [c for c in children(events, first["runId"]) if c["name"] == "approval"]
    assert first["name"] == "approval"
    ask_runs = by_name(events, "ask")
    assert len(ask_runs) == 2
    interrupted = end_of(events, ask_runs[0]["runId"])
    assert interrupted["event"] == "end"
    assert interrupted["metadata"]["interrupted"] is True
    assert interrupted["metadata"]["interruptType"] == "GraphInterrupt"
    assert interrupted["output"] == [{"question": "approve refund?"}]
    assert end_of(events, ask_runs[1]["runId"])["output"] == {"answer": "yes"}
    assert end_of(events, second["runId"])["output"] == {"request": "refund", "answer": "yes"}
    paused_root = end_of(events, first["runId"])
    assert paused_root["event"] == "end" and paused_root["metadata"]["interrupted"] is True
    assert paused_root["output"] == [{"question": "approve refund?"}]  # what it asks the human
    assert "interrupted" not in end_of(events, second["runId"]).get("metadata", {})
    assert second["input"] == {"resume": "yes"}  # the resumed graph's input: the human's answer


def test_hidden_runs_are_folded_and_children_reparented(events_of: Any) -> None:
    model = FakeToolChatModel(messages=iter(["inner answer", "inner answer"]))
    internal = RunnableLambda(lambda x: model.invoke(x), name="plumbing").with_config(
        tags=["langsmith:hidden"]
    )
    chain = RunnableLambda(lambda x: x, name="first") | internal

    chain.invoke("hi", config={"callbacks": [CallbackHandler()]})
    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    assert not by_name(events, "plumbing")
    llm = next(e for e in events if e["event"] == "start" and e["type"] == "llm")
    assert llm["parentRunId"] == root["runId"]  # the hidden chain's child moved up
    assert "langsmith:hidden" not in llm.get("tags", [])

    chain.invoke("hi", config={"callbacks": [CallbackHandler(show_internal=True)]})
    events = events_of()
    assert_valid_tree(events)
    (plumbing,) = by_name(events, "plumbing")
    llm2 = [e for e in events if e["event"] == "start" and e["type"] == "llm"][1]
    assert llm2["parentRunId"] == plumbing["runId"]
    from lunatrace.integrations.langchain.handler import HIDDEN

    assert HIDDEN == {}


def test_agent_tool_calls_arguments_are_json_strings(events_of: Any) -> None:
    agent = two_tool_agent(tool_call_message("get_weather", {"city": "São Paulo"}, "c1"), "ok")
    agent.invoke({"messages": [("human", "?")]}, config={"callbacks": [CallbackHandler()]})
    events = events_of()
    llm = next(e for e in events if e["event"] == "start" and e["type"] == "llm")
    out = end_of(events, llm["runId"])["output"]
    arguments = out["toolCalls"][0]["function"]["arguments"]
    assert isinstance(arguments, str) and json.loads(arguments) == {"city": "São Paulo"}


def test_command_to_parent_graph_is_not_an_error(events_of: Any) -> None:
    def escalate(state: Counter) -> Command[Any]:
        update = {"x": state["x"] + 1, "log": ["escalated"]}
        return Command(graph=Command.PARENT, goto="finish", update=update)

    sub = StateGraph(Counter)
    sub.add_node("escalate", escalate)
    sub.add_edge(START, "escalate")
    child = sub.compile(name="child")

    builder = StateGraph(Counter)
    builder.add_node("child", child)
    builder.add_node("finish", lambda s: {"log": ["finish"]})
    builder.add_edge(START, "child")
    builder.add_edge("finish", END)
    graph = builder.compile(name="parent")
    result = graph.invoke({"x": 0, "log": []}, config={"callbacks": [CallbackHandler()]})
    assert result["log"] == ["escalated", "finish"]
    events = events_of()
    assert_valid_tree(events)
    assert not [e for e in events if e["event"] == "error"]
    bubbled = [e for e in events if e["event"] == "end" and e.get("metadata", {}).get("interrupted")]
    assert bubbled and {e["metadata"]["interruptType"] for e in bubbled} == {"ParentCommand"}
    assert by_name(events, "finish")
