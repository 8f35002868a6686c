"""Streams of a monitored Anthropic client: ``create(stream=True)`` and ``messages.stream``.

Each stream is checked twice: the application sees exactly what an unmonitored client
gives (the same events, ``text_stream``, ``get_final_message()``), and the run ends with
the stream, whichever way it ends: read to the end, closed early, dropped unread, cut by
the network or failed by an ``error`` event.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

import lunatrace
from lunatrace.core.transport import MemorySink
from tests.support import fake_anthropic as fa
from tests.support.fake_anthropic import FakeAnthropic


@pytest.fixture
def api() -> Iterator[FakeAnthropic]:
    yield from fa.running()


USER = [{"role": "user", "content": "Weather in Paris?"}]
TOOL_ANSWER = fa.Answer(
    content=(
        fa.thinking("They want the weather."),
        fa.text("Let me look."),
        fa.tool_use("get_weather", {"city": "Paris", "unit": "celsius"}),
    ),
    stop_reason="tool_use",
    usage=fa.usage(input_tokens=20, output_tokens=30, cache_read=100),
)
TOOL_OUTPUT = {
    "role": "assistant",
    "content": "Let me look.",
    "tool_calls": [
        {
            "type": "function",
            "id": "toolu_01",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
        }
    ],
    "thinking": "They want the weather.",
}
ARGS = {"model": fa.REQUEST_MODEL, "max_tokens": 256, "messages": USER}


def runs(sink: MemorySink) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each llm run's start and its end (or error), in order."""
    starts = [e for e in sink.events if e["type"] == "llm" and e["event"] == "start"]
    ends = {e["runId"]: e for e in sink.events if e["type"] == "llm" and e["event"] in ("end", "error")}
    return [(start, ends[start["runId"]]) for start in starts if start["runId"] in ends]


def only_run(sink: MemorySink) -> tuple[dict[str, Any], dict[str, Any]]:
    (run,) = runs(sink)
    return run


def dumped(events: Any) -> list[dict[str, Any]]:
    return [event.model_dump() for event in events]


def test_create_stream_yields_the_client_s_events_and_ends_the_run(
    memory_sink: MemorySink, api: FakeAnthropic
) -> None:
    api.script(TOOL_ANSWER, TOOL_ANSWER)
    plain = dumped(api.client().messages.create(**ARGS, stream=True))
    stream = lunatrace.monitor(api.client()).messages.create(**ARGS, stream=True)
    assert type(stream) is anthropic.Stream  # the client's own object, traced in place
    assert isinstance(stream, anthropic.Stream)
    assert runs(memory_sink) == []  # nothing is known of the answer before it is read
    assert dumped(stream) == plain
    start, end = only_run(memory_sink)
    assert start["name"] == fa.MODEL
    assert start["input"] == [{"role": "user", "content": "Weather in Paris?"}]
    assert end["output"] == TOOL_OUTPUT
    assert end["tokensUsage"] == {"prompt": 120, "completion": 30, "promptCached": 100}
    assert end["metadata"]["stopReason"] == "tool_use"
    assert end["metadata"]["timeToFirstTokenMs"] >= 0
    assert "cancelled" not in end["metadata"]


def test_stream_manager_helpers_work_as_without_lunatrace(
    memory_sink: MemorySink, api: FakeAnthropic
) -> None:
    api.script(*[TOOL_ANSWER] * 6)
    results = []
    for client in (api.client(), lunatrace.monitor(api.client())):
        manager = client.messages.stream(**ARGS)
        assert type(manager) is anthropic.lib.streaming.MessageStreamManager
        with manager as stream:
            events = dumped(stream)
        with client.messages.stream(**ARGS) as stream:
            text = list(stream.text_stream)
        with client.messages.stream(**ARGS) as stream:
            final = stream.get_final_message().model_dump()
        results.append((events, text, final))
    assert results[0] == results[1]
    assert results[1][1] == ["Let ", "me l", "ook."]
    assert len(runs(memory_sink)) == 3
    for start, end in runs(memory_sink):
        assert start["name"] == fa.MODEL
        assert end["output"] == TOOL_OUTPUT
        assert end["tokensUsage"] == {"prompt": 120, "completion": 30, "promptCached": 100}
        assert "timeToFirstTokenMs" in end["metadata"]


def test_a_manager_never_entered_makes_no_request_and_no_run(
    memory_sink: MemorySink, api: FakeAnthropic
) -> None:
    lunatrace.monitor(api.client()).messages.stream(**ARGS)
    gc.collect()
    assert api.bodies() == [] and runs(memory_sink) == []


def test_leaving_the_block_early_ends_the_run_with_the_partial_answer(
    memory_sink: MemorySink, api: FakeAnthropic
) -> None:
    api.script(fa.Answer(content=(fa.text("One two three four five six."),)))
    with lunatrace.monitor(api.client()).messages.stream(**ARGS) as stream:
        pieces = [piece for piece, _ in zip(stream.text_stream, range(2), strict=False)]
    assert pieces == ["One ", "two "]
    _, end = only_run(memory_sink)
    assert end["event"] == "end"
    assert end["metadata"]["cancelled"] is True
    assert end["output"]["content"].startswith("One two ")


def test_closing_a_created_stream_early_keeps_what_arrived(
    memory_sink: MemorySink, api: FakeAnthropic
) -> None:
    api.script(fa.Answer(content=(fa.text("abcdefghijkl"),)))
    stream = lunatrace.monitor(api.client()).messages.create(**ARGS, stream=True)
    for event in stream:
        if event.type == "content_block_delta":
            break
    stream.close()
    _, end = only_run(memory_sink)
    assert end["output"] == {"role": "assistant", "content": "abcd"}
    assert end["metadata"]["cancelled"] is True
    assert end["tokensUsage"]["prompt"] == 12  # message_start's count, the rest never came


def test_a_stream_dropped_unfinished_ends_when_collected(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.script(fa.Answer(content=(fa.text("abcdefghijkl"),)))
    client = lunatrace.monitor(api.client())

    def read_two() -> None:
        stream = client.messages.stream(**ARGS).__enter__()
        next(iter(stream))
        next(iter(stream))

    read_two()
    gc.collect()
    _, end = only_run(memory_sink)
    assert end["event"] == "end" and end["metadata"]["cancelled"] is True


def test_a_created_stream_dropped_unfinished_ends_when_collected(
    memory_sink: MemorySink, api: FakeAnthropic
) -> None:
    api.script(fa.Answer(content=(fa.text("abcdefghijkl"),)))
    stream = lunatrace.monitor(api.client()).messages.create(**ARGS, stream=True)
    kinds = [next(stream).type, next(stream).type]
    del stream
    gc.collect()
    assert kinds == ["message_start", "content_block_start"]
    _, end = only_run(memory_sink)
    assert end["event"] == "end" and end["metadata"]["cancelled"] is True
    assert end["output"] == {"role": "assistant", "content": ""}


def test_a_stream_cut_mid_way_fails_the_run(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.fault(fa.stream_of(fa.Answer(content=(fa.text("abcdefghijkl"),)), cut_after=4))
    stream = lunatrace.monitor(api.client()).messages.create(**ARGS, stream=True)
    with pytest.raises(Exception) as raised:  # the HTTP library's own error: httpx or httpx2
        for _ in stream:
            pass
    start, error = only_run(memory_sink)
    assert start["name"] == fa.MODEL  # message_start had arrived
    assert error["event"] == "error"
    assert type(raised.value).__name__ in error["error"]["message"]


def test_an_error_event_fails_the_run_with_its_message(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.fault(fa.stream_of(fa.Answer(), error_after=4))
    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        lunatrace.monitor(api.client()).messages.stream(**ARGS) as stream,
    ):
        stream.get_final_message()
    assert "Overloaded" in str(raised.value)
    _, error = only_run(memory_sink)
    assert error["event"] == "error"
    assert "overloaded_error" in error["error"]["message"] and "Overloaded" in error["error"]["message"]


def test_a_stream_refused_at_once_is_an_error_run(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.fault(fa.status_error(429, "Rate limited."))
    client = lunatrace.monitor(api.client())
    with pytest.raises(anthropic.RateLimitError), client.messages.stream(**ARGS):
        pass
    start, error = only_run(memory_sink)
    assert start["name"] == fa.REQUEST_MODEL and "Rate limited." in error["error"]["message"]


def test_stream_calls_nest_where_they_were_made(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    client = lunatrace.monitor(api.client())

    @lunatrace.trace
    def open_stream() -> Any:
        return client.messages.create(**ARGS, stream=True, tags=["streamed"])

    stream = open_stream()  # read outside the traced function
    list(stream)
    (outer,) = [e for e in memory_sink.events if e["event"] == "start" and e["type"] != "llm"]
    start, end = only_run(memory_sink)
    assert start["parentRunId"] == outer["runId"] and start["tags"] == ["streamed"]
    assert end["output"]["content"] == "Hello there!"


async def test_async_create_stream(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.script(TOOL_ANSWER, TOOL_ANSWER)
    plain = dumped([event async for event in await api.async_client().messages.create(**ARGS, stream=True)])
    stream = await lunatrace.monitor(api.async_client()).messages.create(**ARGS, stream=True)
    assert type(stream) is anthropic.AsyncStream and isinstance(stream, anthropic.AsyncStream)
    assert dumped([event async for event in stream]) == plain
    _, end = only_run(memory_sink)
    assert end["output"] == TOOL_OUTPUT and "cancelled" not in end["metadata"]


async def test_async_stream_manager(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.script(*[TOOL_ANSWER] * 6)
    results = []
    for client in (api.async_client(), lunatrace.monitor(api.async_client())):
        async with client.messages.stream(**ARGS) as stream:
            events = dumped([event async for event in stream])
        async with client.messages.stream(**ARGS) as stream:
            text = [piece async for piece in stream.text_stream]
        async with client.messages.stream(**ARGS) as stream:
            final = (await stream.get_final_message()).model_dump()
        results.append((events, text, final))
    assert results[0] == results[1]
    assert [end["output"] for _, end in runs(memory_sink)] == [TOOL_OUTPUT] * 3


async def test_async_stream_left_early_and_refused(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.fault(fa.status_error(500, "Internal server error"))
    client = lunatrace.monitor(api.async_client())
    with pytest.raises(anthropic.InternalServerError):
        async with client.messages.stream(**ARGS):
            pass
    async with client.messages.stream(**ARGS) as stream:
        async for event in stream:
            if event.type == "content_block_delta":
                break
    (_, error), (_, end) = runs(memory_sink)
    assert error["event"] == "error" and "Internal server error" in error["error"]["message"]
    assert end["output"]["content"] == "Hell" and end["metadata"]["cancelled"] is True


def test_the_beta_messages_api_is_traced_the_same_way(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.script(TOOL_ANSWER, TOOL_ANSWER, TOOL_ANSWER)
    beta = lunatrace.monitor(api.client()).beta.messages
    betas = {"betas": ["token-efficient-tools-2025-02-19"]}
    assert beta.create(**ARGS, **betas).content[1].text == "Let me look."
    assert [event.type for event in beta.create(**ARGS, **betas, stream=True)][-1] == "message_stop"
    with beta.stream(**ARGS, **betas) as stream:
        assert stream.get_final_message().stop_reason == "tool_use"
    assert [request.headers.get("anthropic-beta") for request in api.provider.requests] == [
        "token-efficient-tools-2025-02-19"
    ] * 3
    assert len(runs(memory_sink)) == 3
    for start, end in runs(memory_sink):
        assert start["name"] == fa.MODEL
        assert end["output"] == TOOL_OUTPUT
        assert end["tokensUsage"] == {"prompt": 120, "completion": 30, "promptCached": 100}


def test_server_tool_blocks_and_unknown_deltas_are_kept(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    search = {
        "type": "server_tool_use",
        "id": "srvtoolu_01",
        "name": "web_search",
        "input": {"query": "Paris"},
    }
    result = {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_01",
        "content": [
            {
                "type": "web_search_result",
                "title": "Paris",
                "url": "https://example.org/paris",
                "encrypted_content": "abc",
                "page_age": None,
            }
        ],
    }
    answer = fa.Answer(content=(search, result, fa.text("Paris is sunny.")))
    events = answer.events()
    cited = (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {
                "type": "citations_delta",
                "citation": {
                    "type": "web_search_result_location",
                    "url": "https://example.org/paris",
                    "title": "Paris",
                    "encrypted_index": "x",
                    "cited_text": "sunny",
                },
            },
        },
    )
    events.insert(-3, cited)  # a delta kind the run does not collect: passed through, ignored
    api.fault(fa.Sse(events))
    api.script(answer)
    client = lunatrace.monitor(api.client())
    streamed = list(client.messages.create(**ARGS, stream=True))
    assert [e.type for e in streamed].count("content_block_delta") == len(
        [e for e in events if e[0] == "content_block_delta"]
    )
    client.messages.create(**ARGS)
    (_, from_stream), (_, from_json) = runs(memory_sink)
    for end in (from_stream, from_json):
        output = end["output"]
        assert output["tool_calls"] == [
            {
                "type": "function",
                "id": "srvtoolu_01",
                "function": {"name": "web_search", "arguments": '{"query": "Paris"}'},
            }
        ]
        assert output["content"][0]["type"] == "web_search_tool_result"
        assert output["content"][1] == {"type": "text", "text": "Paris is sunny."}
