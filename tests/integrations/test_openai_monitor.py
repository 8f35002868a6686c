"""lunatrace.monitor(client) itself: in place, idempotent, reversible, the client's own
answers and signatures; the per-call extras; the contexts and nesting that apply.

The real ``openai`` client talks to the fake OpenAI API on 127.0.0.1.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain_core.tools import tool

import lunatrace
from lunatrace.core.transport import MemorySink
from lunatrace.integrations import openai as lt_openai
from lunatrace.integrations.langchain import CallbackHandler
from tests.support import fake_openai as fo
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_provider import one_run


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with fo.running() as server:
        yield server


QUESTION = [{"role": "user", "content": "Capital of France?"}]


def ask(client: Any, **kwargs: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, **kwargs)


def llm_starts(sink: MemorySink) -> list[dict[str, Any]]:
    return [e for e in sink.events if e["event"] == "start" and e["type"] == "llm"]


def test_monitor_returns_the_same_client_with_the_real_methods_signatures(fake: FakeOpenAI) -> None:
    bare = openai.OpenAI(**fake.client_options())
    client = openai.OpenAI(**fake.client_options())
    assert lunatrace.monitor(client) is client and type(client) is openai.OpenAI
    for resource, method in (
        ("chat.completions", "create"),
        ("responses", "create"),
        ("embeddings", "create"),
    ):
        traced, original = (_method(each, resource, method) for each in (client, bare))
        assert traced != original  # replaced on this instance
        assert inspect.signature(traced) == inspect.signature(original)
        assert traced.__doc__ == original.__doc__ and traced.__name__ == original.__name__
    assert inspect.iscoroutinefunction(
        lunatrace.monitor(openai.AsyncOpenAI(**fake.client_options())).chat.completions.create
    )


def _method(client: Any, resource: str, name: str) -> Any:
    node = client
    for part in resource.split("."):
        node = getattr(node, part)
    return getattr(node, name)


def test_monitoring_twice_is_monitoring_once(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(lunatrace.monitor(openai.OpenAI(**fake.client_options())))
    lt_openai.monitor(client)
    ask(client)
    assert len(llm_starts(memory_sink)) == 1


def test_unmonitor_restores_the_clients_own_methods(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    assert lunatrace.unmonitor(client) is client
    completions = client.chat.completions
    assert completions.create.__func__ is type(completions).create  # type: ignore[attr-defined]
    assert "create" not in vars(completions)
    ask(client)
    assert memory_sink.events == []
    lunatrace.monitor(client)  # and again
    ask(client)
    assert len(llm_starts(memory_sink)) == 1
    lunatrace.unmonitor(lunatrace.unmonitor(client))  # a client not monitored is left as it is


def test_only_the_monitored_instance_is_traced(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    ask(openai.OpenAI(**fake.client_options()))
    assert memory_sink.events == []


@pytest.mark.parametrize("target", [openai, object(), "client", openai.DefaultHttpxClient()])
def test_an_object_that_is_not_a_client_is_refused_at_once(target: Any) -> None:
    with pytest.raises(TypeError, match="lunatrace"):
        lunatrace.monitor(target)


def test_azure_clients(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.AzureOpenAI(**fake.azure_options("prod-gpt")))
    answer = client.chat.completions.create(model="prod-gpt", messages=QUESTION)
    start, end = one_run(memory_sink.events)
    assert start["name"] == fo.ANSWERING_MODEL  # the model behind the deployment
    assert end["output"]["content"] == answer.choices[0].message.content


async def test_async_azure_clients(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.AsyncAzureOpenAI(**fake.azure_options("prod-gpt")))
    stream = await client.chat.completions.create(model="prod-gpt", messages=QUESTION, stream=True)
    async for _ in stream:
        pass
    _, end = one_run(memory_sink.events)
    assert end["output"]["content"] == fo.Script().text


# --- per-call extras -------------------------------------------------------------------


def test_the_extras_are_the_runs_and_never_reach_the_provider(
    memory_sink: MemorySink, fake: FakeOpenAI
) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    thread = lunatrace.open_thread()
    message = thread.track_message("user", "Capital of France?")
    ask(
        client,
        temperature=0,
        user_id="user-7",
        user_props={"plan": "pro"},
        tags=["geo", "faq"],
        metadata={"experiment": "b"},
        parent=message,
        name="capital-question",
    )
    assert fake.last_body(fo.CHAT) == {"model": "gpt-4o-mini", "messages": QUESTION, "temperature": 0}
    start, _ = one_run(memory_sink.events)
    assert start["userId"] == "user-7" and start["userProps"] == {"plan": "pro"}
    assert start["tags"] == ["geo", "faq"]
    assert start["metadata"] == {"experiment": "b"}
    assert start["parentRunId"] == message
    assert start["name"] == "capital-question"


def test_a_stream_call_takes_its_extras_out_too(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    for _ in ask(client, stream=True, user_id="user-8", tags="streamed"):
        pass
    assert set(fake.last_body(fo.CHAT)) == {"model", "messages", "stream"}
    start, _ = one_run(memory_sink.events)
    assert (start["userId"], start["tags"]) == ("user-8", ["streamed"])


def test_a_failure_of_lunatrace_never_reaches_the_call(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    answer = ask(client, tags=Unprintable(), user_id="user-9")
    assert answer.choices[0].message.content == fo.Script().text
    assert set(fake.last_body(fo.CHAT)) == {"model", "messages"}  # extras still kept out
    assert lunatrace.stats()["internal_errors"] == 1
    assert memory_sink.events == []  # that call went untraced; the next ones are traced
    ask(client)
    assert len(llm_starts(memory_sink)) == 1


# --- contexts and nesting --------------------------------------------------------------


def test_the_context_user_tags_and_metadata_apply(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    with (
        lunatrace.identify("user-1", {"plan": "free"}),
        lunatrace.tags(["ctx"]),
        lunatrace.metadata({"team": "a"}),
    ):
        ask(client, tags=["call"])
    start, _ = one_run(memory_sink.events)
    assert (start["userId"], start["userProps"]) == ("user-1", {"plan": "free"})
    assert start["tags"] == ["ctx", "call"] and start["metadata"] == {"team": "a"}


def test_a_call_inside_a_traced_function_nests_under_it(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))

    @lunatrace.trace(name="answer", type="agent")
    def answer() -> Any:
        ask(client)
        return ask(client, stream=True)  # read by the caller, after the function returned

    stream = answer()
    for _ in stream:
        pass
    agent = next(e for e in memory_sink.events if e["event"] == "start" and e["name"] == "answer")
    assert [e["parentRunId"] for e in llm_starts(memory_sink)] == [agent["runId"]] * 2


def test_a_call_inside_a_langchain_tool_nests_under_the_tool(
    memory_sink: MemorySink, fake: FakeOpenAI
) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))

    @tool
    def capital(country: str) -> str:
        """The capital of a country, asked to the model."""
        content = ask(client).choices[0].message.content
        return str(content)

    assert (
        capital.invoke({"country": "France"}, config={"callbacks": [CallbackHandler()]}) == fo.Script().text
    )
    tool_start = next(e for e in memory_sink.events if e["event"] == "start" and e["type"] == "tool")
    (llm,) = llm_starts(memory_sink)
    assert llm["parentRunId"] == tool_start["runId"]


def test_a_call_in_a_project_block_goes_to_that_project(fake: FakeOpenAI, tmp_path: Any) -> None:
    from tests.support.fake_lunary import FakeLunary

    other = FakeLunary().start()
    try:
        client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
        with lunatrace.project(other.key, other.url):
            stream = ask(client, stream=True)
        for _ in stream:  # read outside the block: the run stays in the project it began in
            pass
        assert lunatrace.flush(10)
        assert [(e["event"], e["type"]) for e in other.events] == [("start", "llm"), ("end", "llm")]
    finally:
        other.stop()


def test_raw_response_calls_pass_through_untraced(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=QUESTION, tags="x")
    assert raw.http_request.url.path == fo.CHAT and raw.parse().choices[0].message.content == fo.Script().text
    assert "tags" not in fake.last_body(fo.CHAT)  # the extras are still kept from the provider
    assert memory_sink.events == []  # the HTTP response, not an answer: nothing to record
