"""responses.create / parse / stream and embeddings.create of a monitored OpenAI client.

The Responses API's items become OpenAI chat messages on the run; an embedding call is
an ``embed`` run. The real ``openai`` client talks to the fake OpenAI API on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import openai
import pytest
from pydantic import BaseModel

import lunatrace
from lunatrace.core.transport import MemorySink
from tests.support import fake_openai as fo
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_provider import one_run


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with fo.running() as server:
        yield server


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
USAGE = {"prompt": 12, "completion": 7, "promptCached": 4}


def test_instructions_and_a_text_input(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    response = client.responses.create(
        model="gpt-4o-mini",
        instructions="Answer briefly.",
        input="Capital of France?",
        temperature=0.3,
        max_output_tokens=40,
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
    )
    assert response.output_text == fo.Script().text
    start, end = one_run(memory_sink.events)
    assert start["name"] == fo.ANSWERING_MODEL
    assert start["input"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert start["params"] == {
        "temperature": 0.3,
        "max_tokens": 40,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parameters": WEATHER["parameters"],
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    assert end["output"] == {"role": "assistant", "content": fo.Script().text}
    assert end["tokensUsage"] == USAGE


def test_input_items_become_messages(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    items = [
        {"role": "developer", "content": "Use the tools."},
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {
            "type": "function_call",
            "call_id": "call_9",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_9", "output": "21 C, sunny"},
    ]
    lunatrace.monitor(openai.OpenAI(**fake.client_options())).responses.create(
        model="gpt-4o-mini", input=items
    )
    assert fake.last_body(fo.RESPONSES)["input"] == items  # sent as given
    start, _ = one_run(memory_sink.events)
    assert start["input"] == [
        {"role": "system", "content": "Use the tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    "id": "call_9",
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "21 C, sunny"},
    ]


def test_output_tool_calls_and_a_reasoning_summary(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    fake.script.tool_calls = [("get_weather", '{"city": "Paris"}')]
    fake.script.reasoning = "The user wants the weather: call the tool."
    response = lunatrace.monitor(openai.OpenAI(**fake.client_options())).responses.create(
        model="o4-mini",
        input="Weather in Paris?",
        tools=[WEATHER],
        reasoning={"effort": "low", "summary": "auto"},
    )
    assert [item.type for item in response.output] == ["reasoning", "function_call"]
    start, end = one_run(memory_sink.events)
    assert start["params"]["reasoning_effort"] == "low"
    assert end["output"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                "id": "call_0",
            }
        ],
        "reasoning": "The user wants the weather: call the tool.",
    }


def test_an_incomplete_response_says_so(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    reply = fake.reply(fo.RESPONSES, {})
    body = {**reply.body, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}  # type: ignore[union-attr]
    fake.queue(fo.RESPONSES, replace(reply, body=body))
    response = lunatrace.monitor(openai.OpenAI(**fake.client_options())).responses.create(
        model="gpt-4o-mini", input="Capital of France?", max_output_tokens=5
    )
    assert response.status == "incomplete"
    _, end = one_run(memory_sink.events)
    assert end["event"] == "end" and end["metadata"] == {"status": "incomplete"}
    assert end["output"]["content"] == fo.Script().text


def test_a_streamed_response(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    bare = [
        event.model_dump()
        for event in openai.OpenAI(**fake.client_options()).responses.create(
            model="gpt-4o-mini", input="Capital of France?", stream=True
        )
    ]
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    stream = client.responses.create(model="gpt-4o-mini", input="Capital of France?", stream=True)
    assert type(stream) is openai.Stream
    assert [event.model_dump() for event in stream] == bare
    start, end = one_run(memory_sink.events)
    assert start["name"] == fo.ANSWERING_MODEL
    assert end["output"] == {"role": "assistant", "content": fo.Script().text}
    assert end["tokensUsage"] == USAGE  # from response.completed
    assert end["metadata"]["timeToFirstTokenMs"] >= 0


def test_a_streamed_response_closed_early_keeps_its_text(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    stream = lunatrace.monitor(openai.OpenAI(**fake.client_options())).responses.create(
        model="gpt-4o-mini", input="Capital of France?", stream=True
    )
    for event in stream:
        if event.type == "response.output_text.delta" and event.delta == "is ":
            break
    stream.close()
    start, end = one_run(memory_sink.events)
    assert start["name"] == fo.ANSWERING_MODEL  # from response.created
    assert end["output"] == {"role": "assistant", "content": "Paris is "}
    assert end["metadata"]["cancelled"] is True and end["metadata"]["tokensEstimated"] is True


def test_a_response_stream_cut_mid_way_is_an_error(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    cut = replace(fake.reply(fo.RESPONSES, {"stream": True}), cut_after=4)
    fake.queue(fo.RESPONSES, cut, cut)
    with pytest.raises(Exception) as bare:  # whatever the client raises, the monitored one raises too
        list(
            openai.OpenAI(**fake.client_options()).responses.create(
                model="gpt-4o-mini", input="Hi", stream=True
            )
        )
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    with pytest.raises(type(bare.value)):
        list(client.responses.create(model="gpt-4o-mini", input="Hi", stream=True))
    _, end = one_run(memory_sink.events)
    assert end["event"] == "error" and type(bare.value).__name__ in end["error"]["message"]


def test_the_stream_helper(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    with client.responses.stream(model="gpt-4o-mini", input="Capital of France?") as stream:
        final = stream.get_final_response()
    assert final.output_text == fo.Script().text
    _, end = one_run(memory_sink.events)
    assert end["output"]["content"] == fo.Script().text and end["tokensUsage"] == USAGE


class City(BaseModel):
    name: str
    country: str


def test_parse_with_a_text_format(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    fake.script.text = json.dumps({"name": "Paris", "country": "France"})
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    parsed = client.responses.parse(model="gpt-4o-mini", input="Capital of France?", text_format=City)
    assert parsed.output_parsed == City(name="Paris", country="France")
    start, end = one_run(memory_sink.events)
    assert start["params"]["response_format"]["json_schema"]["schema"] == City.model_json_schema()
    assert end["output"]["content"] == fake.script.text


async def test_the_async_client(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.AsyncOpenAI(**fake.client_options()))
    response = await client.responses.create(model="gpt-4o-mini", input="Capital of France?")
    stream = await client.responses.create(model="gpt-4o-mini", input="Capital of France?", stream=True)
    texts = [event.delta async for event in stream if event.type == "response.output_text.delta"]
    assert "".join(texts) == response.output_text
    ends = [e for e in memory_sink.events if e["event"] == "end"]
    assert [e["output"]["content"] for e in ends] == [response.output_text] * 2


# --- embeddings ------------------------------------------------------------------------


def test_embeddings_are_an_embed_run(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    texts = ["the cat sat", "on the mat"]
    bare = openai.OpenAI(**fake.client_options()).embeddings.create(
        model="text-embedding-3-small", input=texts
    )
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    result = client.embeddings.create(model="text-embedding-3-small", input=texts, dimensions=8)
    assert result.model_dump() == bare.model_dump()
    start, end = one_run(memory_sink.events, "embed")
    assert start["name"] == fo.EMBEDDING_MODEL
    assert start["input"] == texts and start["params"] == {"dimensions": 8}
    assert end["output"] == {"embeddings": 2, "dimensions": 8}
    assert end["tokensUsage"] == {"prompt": 6, "completion": 0}


async def test_async_embeddings(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.AsyncOpenAI(**fake.client_options()))
    result = await client.embeddings.create(model="text-embedding-3-small", input="one text")
    assert len(result.data) == 1
    start, end = one_run(memory_sink.events, "embed")
    assert start["input"] == "one text" and end["output"] == {"embeddings": 1, "dimensions": 8}
