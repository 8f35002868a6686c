"""Real traces for the viewer tests, recorded through the public API into a memory sink."""

from __future__ import annotations

from typing import Any

import pytest

import lunatrace
from lunatrace.core.transport import MemorySink


@lunatrace.trace(type="tool")
def lookup(city: str) -> dict[str, Any]:
    if city == "Atlantis":
        raise LookupError(f"no weather for {city}")
    return {"city": city, "temp": 21}


@lunatrace.trace(type="agent", name="weather-agent", tags=["demo"])
def weather_agent(question: str) -> str:
    tracer = lunatrace.get_tracer()
    llm = tracer.start_run(
        "llm", "gpt-4o-mini", [{"role": "user", "content": question}], params={"temperature": 0}
    )
    tracer.end_run(
        llm,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        usage={"prompt": 12, "completion": 5},
    )
    lookup("Paris")
    try:
        lookup("Atlantis")
    except LookupError:
        pass
    return "21 degrees in Paris"


@pytest.fixture
def agent_events(memory_sink: MemorySink) -> list[dict[str, Any]]:
    """Wire events of one agent run: an llm call with a tool call, a tool, a failing tool."""
    with lunatrace.identify("user-7", {"plan": "pro"}):
        weather_agent("Weather in Paris?")
    return list(memory_sink.events)
