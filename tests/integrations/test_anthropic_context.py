"""Where a monitored Anthropic call's run goes: under a LangChain run it is made in, under
a thread message, in a ``project()`` block's project; and a stream nobody finishes
reading is closed by core's sweep of abandoned runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda

import lunatrace
from lunatrace.core.transport import MemorySink
from lunatrace.integrations.langchain import CallbackHandler
from tests.support import fake_anthropic as fa
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_lunary import FakeLunary


@pytest.fixture
def api() -> Iterator[FakeAnthropic]:
    yield from fa.running()


ARGS = {"model": fa.REQUEST_MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}


def starts(sink: MemorySink, run_type: str) -> list[dict[str, Any]]:
    return [e for e in sink.events if e["event"] == "start" and e["type"] == run_type]


def test_a_call_inside_a_langchain_step_nests_under_it(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    client = lunatrace.monitor(api.client())
    step = RunnableLambda(lambda question: client.messages.create(**ARGS).content[0].text, name="ask-claude")
    assert step.invoke("Hi", config={"callbacks": [CallbackHandler()]}) == "Hello there!"
    assert lunatrace.flush(5)
    (chain,) = starts(memory_sink, "chain")
    (llm,) = starts(memory_sink, "llm")
    assert chain["name"] == "ask-claude"
    assert llm["parentRunId"] == chain["runId"]


def test_a_call_for_a_thread_message_nests_under_it(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    client = lunatrace.monitor(api.client())
    thread = lunatrace.open_thread(tags=["support"])
    question = thread.track_message("user", "Hi")
    client.messages.create(**ARGS, parent=question)
    (llm,) = starts(memory_sink, "llm")
    assert llm["parentRunId"] == question


def test_an_abandoned_stream_is_swept(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    client = lunatrace.monitor(api.client())
    stream = client.messages.create(**ARGS, stream=True)
    next(iter(stream))  # read once, then left open and referenced
    assert lunatrace.get_tracer().close_abandoned(0) == 1
    (error,) = [e for e in memory_sink.events if e["event"] == "error"]
    assert "abandoned" in error["error"]["message"]
    stream.close()  # the run is closed already: nothing more is sent
    assert [e["event"] for e in memory_sink.events if e["type"] == "llm"] == ["start", "error"]


def test_calls_in_a_project_block_go_to_that_project(
    memory_sink: MemorySink, lunary_server: FakeLunary, api: FakeAnthropic
) -> None:
    client = lunatrace.monitor(api.client())
    with lunatrace.project(lunary_server.key, api_url=lunary_server.url):
        client.messages.create(**ARGS)
        stream = client.messages.create(**ARGS, stream=True)
    list(stream)  # read outside the block: its run still goes where it was started
    assert lunatrace.flush(10)
    assert [e for e in memory_sink.events if e["type"] == "llm"] == []
    received = [(e["type"], e["event"]) for e in lunary_server.events]
    assert received == [("llm", "start"), ("llm", "end")] * 2
