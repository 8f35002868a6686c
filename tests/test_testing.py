"""lunatrace.testing: a scripted chat model that binds tools, for offline examples and tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage
from langchain_core.tools import tool

from lunatrace.integrations.langchain import CallbackHandler
from lunatrace.testing import ScriptedChatModel, tool_calls

ROOT = Path(__file__).resolve().parents[1]


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny in {city}"


def test_import_lunatrace_loads_neither_testing_nor_langchain(tmp_path: Path) -> None:
    probe = (
        "import json, sys, lunatrace\n"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if m == 'lunatrace.testing' or m.split('.')[0] in ('langchain', 'langchain_core'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "LUNATRACE_STORE": str(tmp_path / "s.db")},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_answers_in_order_from_a_list_then_refuses() -> None:
    model = ScriptedChatModel(messages=["first", AIMessage(content="second")], model_name="m-1")
    one = model.invoke("hello there")
    assert one.content == "first"
    assert one.response_metadata["model_name"] == "m-1"
    assert one.usage_metadata is not None and one.usage_metadata["total_tokens"] > 0
    assert model.invoke("again").content == "second"
    with pytest.raises(RuntimeError, match="no scripted message left"):
        model.invoke("once more")


def test_an_iterator_is_accepted_as_the_demo_passes_it() -> None:
    model = ScriptedChatModel(messages=iter(["only"]))
    assert model.invoke("x").content == "only"


def test_tool_calls_builds_numbered_calls() -> None:
    message = tool_calls(("a", {"x": 1}), ("b", {}), content="let me look")
    assert message.content == "let me look"
    assert [(c["name"], c["args"], c["id"]) for c in message.tool_calls] == [
        ("a", {"x": 1}, "call_1"),
        ("b", {}, "call_2"),
    ]


def test_bind_tools_sends_openai_schemas() -> None:
    bound: Any = ScriptedChatModel(messages=["ok"]).bind_tools([get_weather])
    (schema,) = bound.kwargs["tools"]
    assert schema["type"] == "function" and schema["function"]["name"] == "get_weather"
    assert bound.invoke("x").content == "ok"


def test_stream_yields_text_then_tool_calls_and_usage() -> None:
    model = ScriptedChatModel(messages=[tool_calls(("get_weather", {"city": "Oslo"}), content="one moment")])
    chunks = list(model.stream("weather?"))
    assert "".join(str(c.content) for c in chunks) == "one moment"
    whole: Any = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    assert [(c["name"], c["args"], c["id"]) for c in whole.tool_calls] == [
        ("get_weather", {"city": "Oslo"}, "call_1")
    ]
    assert whole.usage_metadata["total_tokens"] > 0


def test_create_agent_runs_a_tool_and_is_traced(events_of: Any) -> None:
    model = ScriptedChatModel(
        model_name="scripted-gpt",
        messages=[tool_calls(("get_weather", {"city": "Oslo"})), "It is sunny in Oslo."],
    )
    agent = create_agent(model, tools=[get_weather], name="weather_agent")
    result = agent.invoke(
        {"messages": [("human", "Weather in Oslo?")]}, config={"callbacks": [CallbackHandler()]}
    )
    assert result["messages"][-1].content == "It is sunny in Oslo."
    assert result["messages"][2].content == "sunny in Oslo"
    starts = [e for e in events_of() if e["event"] == "start"]
    assert [e["name"] for e in starts if e["type"] == "llm"] == ["scripted-gpt", "scripted-gpt"]
    (tool_run,) = [e for e in starts if e["type"] == "tool"]
    assert tool_run["name"] == "get_weather" and tool_run["input"] == {"city": "Oslo"}
