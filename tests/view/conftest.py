"""Real traces for the viewer tests, recorded through the public API into a memory sink
or the test's store, and real viewer servers over that store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import lunatrace
from lunatrace.core.transport import MemorySink
from lunatrace.ui.server import ViewerServer, make_server


def store_path() -> Path:
    return lunatrace.get_tracer().config.store_path


@pytest.fixture
def serve() -> Iterator[Callable[..., ViewerServer]]:
    """Start a viewer on a free port over the test's store (record traces before the
    request); ``serve("::1")`` binds another loopback address."""
    servers: list[ViewerServer] = []
    threads: list[threading.Thread] = []

    def start(host: str = "127.0.0.1") -> ViewerServer:
        server = make_server(store_path(), host, 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        threads.append(thread)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
    for thread in threads:
        thread.join(5)


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
