"""chat.completions.create and parse of a monitored OpenAI client, plain and streamed.

The real ``openai`` client talks to the fake OpenAI API (tests/support/fake_openai.py) on
127.0.0.1; the runs are read as the wire events of a tracer with a memory sink.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

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


QUESTION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Capital of France?"},
]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def ask(client: Any, **kwargs: Any) -> Any:
    return client.chat.completions.create(**{"model": "gpt-4o-mini", "messages": QUESTION, **kwargs})


def at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


def test_a_call_is_an_llm_run_named_by_the_model_that_answered(
    memory_sink: MemorySink, fake: FakeOpenAI
) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    answer = ask(client, temperature=0.2, max_completion_tokens=50, seed=7, stop=["\n"])
    start, end = one_run(memory_sink.events)
    assert start["name"] == fo.ANSWERING_MODEL  # not the "gpt-4o-mini" asked for
    assert start["input"] == QUESTION
    assert start["params"] == {"temperature": 0.2, "max_tokens": 50, "seed": 7, "stop": ["\n"]}
    assert end["event"] == "end" and end["type"] == "llm"
    assert end["output"] == {"role": "assistant", "content": answer.choices[0].message.content}
    assert end["tokensUsage"] == {"prompt": 12, "completion": 7, "promptCached": 4}
    assert "metadata" not in end  # reported usage: no estimate


def test_the_answer_is_the_clients_own_and_the_request_is_unchanged(
    memory_sink: MemorySink, fake: FakeOpenAI
) -> None:
    bare = ask(openai.OpenAI(**fake.client_options()), temperature=0.2)
    bare_body = fake.last_body(fo.CHAT)
    monitored = ask(lunatrace.monitor(openai.OpenAI(**fake.client_options())), temperature=0.2)
    assert type(monitored) is type(bare) is openai.types.chat.ChatCompletion
    assert monitored.model_dump() == bare.model_dump()
    assert fake.last_body(fo.CHAT) == bare_body


def test_the_run_lasts_from_the_request_to_the_answer(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    # Started once the answer names the model, the run is still stamped at the request.
    fake.queue(fo.CHAT, replace(fake.reply(fo.CHAT, {"model": "gpt-4o-mini"}), delay_s=0.2))
    ask(lunatrace.monitor(openai.OpenAI(**fake.client_options())))
    start, end = one_run(memory_sink.events)
    assert (at(end) - at(start)).total_seconds() >= 0.2


def test_the_input_is_what_was_sent_even_if_the_list_changes_after(
    memory_sink: MemorySink, fake: FakeOpenAI
) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    messages: list[Any] = list(QUESTION)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    messages.append(answer.choices[0].message)  # the usual way to continue a conversation
    messages.append({"role": "user", "content": "And of Italy?"})
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    first, second = (e for e in memory_sink.events if e["event"] == "start")
    assert first["input"] == QUESTION
    assert second["input"] == [*QUESTION, {"role": "assistant", "content": fo.Script().text}, messages[-1]]


def test_messages_and_tools_given_as_generators_are_read_once(
    memory_sink: MemorySink, fake: FakeOpenAI
) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    client.chat.completions.create(
        model="gpt-4o-mini", messages=(m for m in QUESTION), tools=(t for t in [WEATHER])
    )
    assert fake.last_body(fo.CHAT)["messages"] == QUESTION and fake.last_body(fo.CHAT)["tools"] == [WEATHER]
    start, _ = one_run(memory_sink.events)
    assert start["input"] == QUESTION and start["params"]["tools"] == [WEATHER]


def test_tools_tool_choice_and_tool_calls(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    fake.script.tool_calls = [("get_weather", '{"city": "Paris"}')]
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    answer = ask(
        client, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    )
    assert answer.choices[0].message.tool_calls[0].function.name == "get_weather"
    start, end = one_run(memory_sink.events)
    assert start["params"]["tools"] == [WEATHER]
    assert start["params"]["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }
    assert end["output"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }


def test_several_choices_are_several_messages(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    answer = ask(lunatrace.monitor(openai.OpenAI(**fake.client_options())), n=2)
    _, end = one_run(memory_sink.events)
    assert end["output"] == [
        {"role": "assistant", "content": choice.message.content} for choice in answer.choices
    ]
    assert len({message["content"] for message in end["output"]}) == 2


class City(BaseModel):
    name: str
    country: str


def test_parse_with_a_pydantic_model(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    fake.script.text = json.dumps({"name": "Paris", "country": "France"})
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=QUESTION, response_format=City)
    assert parsed.choices[0].message.parsed == City(name="Paris", country="France")
    sent = fake.last_body(fo.CHAT)["response_format"]
    start, end = one_run(memory_sink.events)
    assert start["params"][
        "responseFormat" if "responseFormat" in start["params"] else "response_format"
    ] == {
        "type": "json_schema",
        "json_schema": {"name": "City", "schema": City.model_json_schema(), "strict": True},
    }
    assert sent["json_schema"]["name"] == "City"
    assert end["output"] == {"role": "assistant", "content": fake.script.text}


async def test_the_async_client(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.AsyncOpenAI(**fake.client_options()))
    answer = await client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert isinstance(answer, openai.types.chat.ChatCompletion)
    start, end = one_run(memory_sink.events)
    assert start["name"] == fo.ANSWERING_MODEL
    assert end["output"]["content"] == answer.choices[0].message.content
    assert end["tokensUsage"] == {"prompt": 12, "completion": 7, "promptCached": 4}


# --- streams ------------------------------------------------------------------------


def test_a_stream_with_usage_reports_it(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    bare = [
        c.model_dump()
        for c in ask(
            openai.OpenAI(**fake.client_options()), stream=True, stream_options={"include_usage": True}
        )
    ]
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    stream = ask(client, stream=True, stream_options={"include_usage": True})
    assert type(stream) is openai.Stream  # the client's own, observed in place
    assert memory_sink.events == []  # nothing read yet: no run yet
    chunks = [chunk.model_dump() for chunk in stream]
    assert chunks == bare
    start, end = one_run(memory_sink.events)
    assert start["name"] == fo.ANSWERING_MODEL
    assert end["output"] == {"role": "assistant", "content": fo.Script().text}
    assert end["tokensUsage"] == {"prompt": 12, "completion": 7, "promptCached": 4}
    assert end["metadata"]["timeToFirstTokenMs"] >= 0
    assert "tokensEstimated" not in end["metadata"] and "cancelled" not in end["metadata"]


def test_a_stream_without_usage_gets_a_flagged_estimate(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    with lunatrace.monitor(openai.OpenAI(**fake.client_options())) as client:
        text = "".join(
            chunk.choices[0].delta.content or "" for chunk in ask(client, stream=True) if chunk.choices
        )
    assert text == fo.Script().text
    _, end = one_run(memory_sink.events)
    assert end["metadata"]["tokensEstimated"] is True
    assert end["tokensUsage"]["completion"] > 0 and end["tokensUsage"]["prompt"] > 0


def test_the_time_to_first_token_counts_from_the_request(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    fake.queue(
        fo.CHAT, replace(fake.reply(fo.CHAT, {"model": "gpt-4o-mini", "stream": True}), item_delay_s=0.05)
    )
    for _ in ask(lunatrace.monitor(openai.OpenAI(**fake.client_options())), stream=True):
        pass
    start, end = one_run(memory_sink.events)
    # The first content arrives after the role chunk and the first piece: two pauses.
    assert end["metadata"]["timeToFirstTokenMs"] >= 100
    assert (at(end) - at(start)).total_seconds() * 1000 >= end["metadata"]["timeToFirstTokenMs"]


def test_a_streamed_tool_call_is_joined(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    fake.script.tool_calls = [("get_weather", '{"city": "Paris"}'), ("get_time", '{"zone": "CET"}')]
    for _ in ask(lunatrace.monitor(openai.OpenAI(**fake.client_options())), stream=True, tools=[WEATHER]):
        pass
    _, end = one_run(memory_sink.events)
    assert end["output"]["tool_calls"] == [
        {
            "id": "call_0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"zone": "CET"}'},
        },
    ]


def test_a_stream_of_two_choices(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    for _ in ask(lunatrace.monitor(openai.OpenAI(**fake.client_options())), stream=True, n=2):
        pass
    _, end = one_run(memory_sink.events)
    assert end["output"] == [
        {"role": "assistant", "content": fo.Script().text},
        {"role": "assistant", "content": f"{fo.Script().text} (answer 2)"},
    ]


async def test_an_async_stream(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.AsyncOpenAI(**fake.client_options()))
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    assert type(stream) is openai.AsyncStream
    async with stream:
        pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    assert "".join(p or "" for p in pieces) == fo.Script().text
    _, end = one_run(memory_sink.events)
    assert end["output"]["content"] == fo.Script().text
    assert end["tokensUsage"] == {"prompt": 12, "completion": 7, "promptCached": 4}
    assert "cancelled" not in end["metadata"]  # read to its end before the block closed it


async def test_an_async_stream_closed_early(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.AsyncOpenAI(**fake.client_options()))
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True)
    read = [await stream.__anext__() for _ in range(3)]  # the role chunk and two pieces
    await stream.close()
    _, end = one_run(memory_sink.events)
    assert end["output"]["content"] == "".join(c.choices[0].delta.content for c in read) == "Paris is "
    assert end["metadata"]["cancelled"] is True


def test_the_stream_helper_is_traced_once(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    with client.chat.completions.stream(model="gpt-4o-mini", messages=QUESTION) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == fo.Script().text
    _, end = one_run(memory_sink.events)
    assert end["output"]["content"] == fo.Script().text


def test_a_stream_closed_early_keeps_what_was_read(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    stream = ask(lunatrace.monitor(openai.OpenAI(**fake.client_options())), stream=True)
    read = [next(stream), next(stream), next(stream)]  # the role chunk and two pieces
    stream.close()
    _, end = one_run(memory_sink.events)
    assert end["output"]["content"] == "".join(c.choices[0].delta.content for c in read) == "Paris is "
    assert end["metadata"]["cancelled"] is True


def test_a_stream_left_in_a_with_block_early(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    with ask(client, stream=True) as stream:
        for chunk in stream:
            if chunk.choices[0].delta.content:
                break
    _, end = one_run(memory_sink.events)
    assert end["output"]["content"] == "Paris "
    assert end["metadata"]["cancelled"] is True


def test_a_stream_dropped_unfinished_ends_when_collected(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    stream = ask(lunatrace.monitor(openai.OpenAI(**fake.client_options())), stream=True)
    next(stream)
    next(stream)
    assert [e["event"] for e in memory_sink.events] == ["start"]
    del stream
    gc.collect()
    _, end = one_run(memory_sink.events)
    assert end["output"]["content"] == "Paris "
    assert end["metadata"]["cancelled"] is True


def test_an_abandoned_stream_is_swept(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    stream = ask(lunatrace.monitor(openai.OpenAI(**fake.client_options())), stream=True)
    next(stream)
    assert lunatrace.get_tracer().close_abandoned(0) == 1
    _, end = one_run(memory_sink.events)
    assert end["event"] == "error" and "abandoned" in end["error"]["message"]
    assert [chunk.choices[0].delta.content for chunk in stream][-2:] == ["France.", None]  # still the user's
    assert len([e for e in memory_sink.events if e["event"] in ("end", "error")]) == 1


# --- errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "error_type"),
    [
        (429, "Rate limit reached for gpt-4o-mini.", openai.RateLimitError),
        (500, "The server had an error while processing your request.", openai.InternalServerError),
    ],
)
def test_an_error_status_is_the_runs_error_and_the_clients_exception(
    memory_sink: MemorySink, fake: FakeOpenAI, status: int, message: str, error_type: type[Exception]
) -> None:
    fake.queue(fo.CHAT, fo.error(status, message), fo.error(status, message))
    with pytest.raises(error_type) as bare:
        ask(openai.OpenAI(**fake.client_options()))
    with pytest.raises(error_type) as raised:
        ask(lunatrace.monitor(openai.OpenAI(**fake.client_options())))
    assert str(raised.value) == str(bare.value) and raised.value.status_code == status
    start, end = one_run(memory_sink.events)
    assert start["name"] == "gpt-4o-mini"  # no answer: the model asked for
    assert end["event"] == "error"
    assert f"Error code: {status}" in end["error"]["message"] and message in end["error"]["message"]
    assert error_type.__name__ in end["error"]["stack"]


def test_a_retried_call_is_one_run(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    fake.queue(fo.CHAT, fo.error(500, "try again"))
    options = {**fake.client_options(), "max_retries": 1}
    ask(lunatrace.monitor(openai.OpenAI(**options)))
    _, end = one_run(memory_sink.events)
    assert end["event"] == "end" and len(fake.provider.bodies(fo.CHAT)) == 2


def test_a_stream_cut_mid_way_is_an_error(memory_sink: MemorySink, fake: FakeOpenAI) -> None:
    cut = replace(fake.reply(fo.CHAT, {"model": "gpt-4o-mini", "stream": True}), cut_after=3)
    fake.queue(fo.CHAT, cut, cut)
    with pytest.raises(Exception) as bare:  # whatever the client raises, the monitored one raises too
        list(ask(openai.OpenAI(**fake.client_options()), stream=True))
    with pytest.raises(type(bare.value)):
        list(ask(lunatrace.monitor(openai.OpenAI(**fake.client_options())), stream=True))
    start, end = one_run(memory_sink.events)
    assert start["name"] == fo.ANSWERING_MODEL  # the chunks before the cut named it
    assert end["event"] == "error" and type(bare.value).__name__ in end["error"]["message"]
