"""The LangChain part of the demo: a ``create_agent`` agent with two tools, and a LangGraph graph."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph

from lunatrace.integrations.langchain import CallbackHandler
from lunatrace.testing import ScriptedChatModel, tool_calls


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return {"Lisbon": "21°C, clear sky"}.get(city, "15°C, cloudy")


@tool
def get_local_time(city: str) -> str:
    """The local time in a city."""
    return {"Lisbon": "18:40"}.get(city, "12:00")


def run_agent() -> str:
    """An agent that calls both tools at once, then answers."""
    model = ScriptedChatModel(
        model_name="demo-gpt",
        messages=iter(
            [
                tool_calls(("get_weather", {"city": "Lisbon"}), ("get_local_time", {"city": "Lisbon"})),
                "It is 18:40 in Lisbon and 21°C under a clear sky: a fine evening for a walk.",
            ]
        ),
    )
    agent = create_agent(
        model,
        tools=[get_weather, get_local_time],
        system_prompt="You are a concise travel assistant.",
        name="travel_agent",
    )
    result = agent.invoke(
        {"messages": [HumanMessage("What's the weather and the time in Lisbon right now?")]},
        config={"callbacks": [CallbackHandler()], "tags": ["demo"]},
    )
    return str(result["messages"][-1].content)


class Ticket(TypedDict):
    text: str
    category: str
    steps: Annotated[list[str], operator.add]
    reply: str


def run_graph() -> str:
    """A LangGraph support graph: classify a ticket, then route it to the right node."""
    model = ScriptedChatModel(
        model_name="demo-gpt-mini",
        messages=iter(["refund", "Sorry about the double charge: the refund is on its way."]),
    )

    def classify(state: Ticket) -> dict[str, Any]:
        label = model.invoke(f"Classify as refund or question: {state['text']}").content
        return {"category": str(label).strip(), "steps": ["classify"]}

    def refund(state: Ticket) -> dict[str, Any]:
        reply = model.invoke(f"Write a short refund reply to: {state['text']}").content
        return {"reply": str(reply), "steps": ["refund"]}

    def answer(state: Ticket) -> dict[str, Any]:
        return {"reply": "See our FAQ.", "steps": ["answer"]}

    def route(state: Ticket) -> Literal["refund", "answer"]:
        return "refund" if state["category"] == "refund" else "answer"

    builder = StateGraph(Ticket)
    builder.add_node("classify", classify)
    builder.add_node("refund", refund)
    builder.add_node("answer", answer)
    builder.add_edge(START, "classify")
    builder.add_conditional_edges("classify", route)
    builder.add_edge("refund", END)
    builder.add_edge("answer", END)
    graph = builder.compile(name="support_graph")
    ticket: Ticket = {
        "text": "I was charged twice for my order #1042.",
        "category": "",
        "steps": [],
        "reply": "",
    }
    state = graph.invoke(ticket, config={"callbacks": [CallbackHandler()]})
    return str(state["reply"])
