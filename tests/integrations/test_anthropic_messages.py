"""messages.create and messages.parse of a monitored Anthropic client, plain calls.

The real ``anthropic`` client talks to the fake Messages API (tests/support/api.py)
on 127.0.0.1; the runs are read as the wire events a tracer with a memory sink made.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

import lunatrace
from lunatrace.core.transport import MemorySink
from lunatrace.integrations import anthropic as lt_anthropic
from tests.support import fake_anthropic as fa
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_lunary import FakeLunary


@pytest.fixture
def api() -> Iterator[FakeAnthropic]:
    yield from fa.running()


USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def ask(client: Any, **kwargs: Any) -> Any:
    return client.messages.create(**{"model": fa.REQUEST_MODEL, "max_tokens": 64, "messages": USER, **kwargs})


def llm_events(sink: MemorySink) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    starts = [e for e in sink.events if e["event"] == "start" and e["type"] == "llm"]
    ends = [e for e in sink.events if e["event"] in ("end", "error") and e["type"] == "llm"]
    return starts, ends


def only_run(sink: MemorySink) -> tuple[dict[str, Any], dict[str, Any]]:
    starts, ends = llm_events(sink)
    assert len(starts) == 1 and len(ends) == 1, sink.events
    assert starts[0]["runId"] == ends[0]["runId"]
    return starts[0], ends[0]


def test_a_call_is_an_llm_run_named_by_the_model_that_answered(
    memory_sink: MemorySink, api: FakeAnthropic
) -> None:
    client = lunatrace.monitor(api.client())
    answer = ask(client, system="Answer in one sentence.")
    assert answer.content[0].text == "Hello there!"
    start, end = only_run(memory_sink)
    assert start["name"] == fa.MODEL  # the dated id the API answered with, not the alias asked for
    assert start["input"] == [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]
    assert start["params"] == {"max_tokens": 64}
    assert end["output"] == {"role": "assistant", "content": "Hello there!"}
    assert end["tokensUsage"] == {"prompt": 12, "completion": 7}
    assert end["metadata"] == {"stopReason": "end_turn"}


def test_the_answer_is_the_one_an_unmonitored_client_gets(api: FakeAnthropic) -> None:
    reply = fa.Answer(
        content=(
            fa.thinking("Paris, so..."),
            fa.text("Sunny."),
            fa.tool_use("get_weather", {"city": "Paris"}),
        )
    )
    api.script(reply, reply)
    plain = ask(api.client(), tools=[WEATHER_TOOL])
    traced = ask(lunatrace.monitor(api.client()), tools=[WEATHER_TOOL])
    assert type(traced) is type(plain) is anthropic.types.Message
    assert traced.model_dump() == plain.model_dump()
    first, second = api.bodies()
    assert first == second  # the request the API saw is the same too


def test_tool_use_history_and_tools_are_in_openai_format(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.script(
        fa.Answer(
            content=(fa.text("Let me check."), fa.tool_use("get_weather", {"city": "Paris"})),
            stop_reason="tool_use",
        ),
        fa.Answer(content=(fa.text("It is sunny in Paris."),)),
    )
    client = lunatrace.monitor(api.client())
    first = ask(client, tools=[WEATHER_TOOL], tool_choice={"type": "any", "disable_parallel_tool_use": True})
    history = [
        *USER,
        {
            "role": "assistant",
            "content": first.content,
        },  # the SDK's own blocks, as applications pass them back
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01",
                    "content": [{"type": "text", "text": "sunny, 21C"}],
                },
                {"type": "text", "text": "Answer briefly."},
            ],
        },
    ]
    ask(client, messages=history, tools=[WEATHER_TOOL], tool_choice={"type": "tool", "name": "get_weather"})
    (start1, start2), (end1, end2) = llm_events(memory_sink)
    function = {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": WEATHER_TOOL["input_schema"],
    }
    assert start1["params"]["tools"] == [{"type": "function", "function": function}]
    assert start1["params"]["tool_choice"] == "required"
    assert start1["params"]["parallel_tool_calls"] is False
    assert start2["params"]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    call = {
        "type": "function",
        "id": "toolu_01",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    assert end1["output"] == {"role": "assistant", "content": "Let me check.", "tool_calls": [call]}
    assert json.loads(end1["output"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert end1["metadata"]["stopReason"] == "tool_use"
    assert start2["input"] == [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "sunny, 21C"},
        {"role": "user", "content": "Answer briefly."},
    ]
    assert end2["output"]["content"] == "It is sunny in Paris."


def test_the_prompt_is_recorded_as_sent_even_if_the_list_changes_after(
    lunary_server: FakeLunary, tmp_path: Path, api: FakeAnthropic
) -> None:
    # Events are converted on the worker, here not before the flush: long after the append.
    lunatrace.configure(
        project_key=lunary_server.key,
        api_url=lunary_server.url,
        store_path=tmp_path / "spool.db",
        flush_interval=60,
    )
    client = lunatrace.monitor(api.client())
    messages = list(USER)
    answer = ask(client, messages=messages)
    messages.append({"role": "assistant", "content": answer.content})  # the next turn, as chat loops do
    messages.append({"role": "user", "content": "And tomorrow?"})
    assert lunatrace.flush(10)
    (start,) = [e for e in lunary_server.events if e["event"] == "start"]
    assert start["input"] == [{"role": "user", "content": "What is the weather in Paris?"}]


def test_one_shot_iterables_reach_both_the_api_and_the_run(
    memory_sink: MemorySink, api: FakeAnthropic
) -> None:
    client = lunatrace.monitor(api.client())
    system = ({"type": "text", "text": t} for t in ("Be brief.",))
    ask(client, messages=(m for m in USER), system=system, tools=(t for t in [WEATHER_TOOL]))
    (body,) = api.bodies()
    assert body["messages"] == USER and body["system"] == [{"type": "text", "text": "Be brief."}]
    assert body["tools"] == [WEATHER_TOOL]
    start, _ = only_run(memory_sink)
    assert start["input"] == [{"role": "system", "content": "Be brief."}, *USER]
    assert start["params"]["tools"][0]["function"]["name"] == "get_weather"


def test_system_blocks_images_params_and_thinking(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.script(fa.Answer(content=(fa.thinking("The user wants a caption."), fa.text("A cat."))))
    client = lunatrace.monitor(api.client())
    ask(
        client,
        max_tokens=2048,
        system=[
            {"type": "text", "text": "You caption images."},
            {"type": "text", "text": "Be short.", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                    },
                    {"type": "text", "text": "Caption this."},
                ],
            }
        ],
        stop_sequences=["END"],
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_body={"temperature": 1, "top_k": 5},  # a keyword only some releases have: as extra_body
    )
    start, end = only_run(memory_sink)
    assert start["input"] == [
        {"role": "system", "content": "You caption images.\n\nBe short."},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "text", "text": "Caption this."},
            ],
        },
    ]
    assert start["params"] == {
        "max_tokens": 2048,
        "stop": ["END"],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "temperature": 1,
        "top_k": 5,
    }
    assert end["output"] == {
        "role": "assistant",
        "content": "A cat.",
        "thinking": "The user wants a caption.",
    }


def test_usage_counts_cached_prompt_tokens(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.script(fa.Answer(usage=fa.usage(input_tokens=10, output_tokens=4, cache_read=300, cache_creation=50)))
    ask(lunatrace.monitor(api.client()))
    _, end = only_run(memory_sink)
    # Anthropic's input_tokens leaves out the cached ones; the prompt is all of them
    assert end["tokensUsage"] == {"prompt": 360, "completion": 4, "promptCached": 300}
    assert end["metadata"]["cacheCreationInputTokens"] == 50


def test_the_request_model_names_a_run_the_api_refused(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.fault(fa.status_error(429, "Number of request tokens has exceeded your rate limit."))
    client = lunatrace.monitor(api.client())
    with pytest.raises(anthropic.RateLimitError) as raised:
        ask(client)
    assert raised.value.status_code == 429  # the client's own exception, untouched
    start, error = only_run(memory_sink)
    assert start["name"] == fa.REQUEST_MODEL
    assert error["event"] == "error"
    assert "429" in error["error"]["message"]
    assert "Number of request tokens has exceeded your rate limit." in error["error"]["message"]


async def test_async_client_and_a_server_error(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.fault(fa.status_error(500, "Internal server error"))
    client = lunatrace.monitor(api.async_client())
    with pytest.raises(anthropic.InternalServerError):
        await ask(client)
    answer = await ask(client, system="Be brief.")
    assert answer.content[0].text == "Hello there!"
    starts, ends = llm_events(memory_sink)
    assert [e["event"] for e in ends] == ["error", "end"]
    assert "500" in ends[0]["error"]["message"] and "Internal server error" in ends[0]["error"]["message"]
    assert starts[1]["name"] == fa.MODEL
    assert starts[1]["input"][0] == {"role": "system", "content": "Be brief."}
    assert ends[1]["tokensUsage"] == {"prompt": 12, "completion": 7}


def test_retries_inside_the_client_make_one_run(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.fault(fa.status_error(529, "Overloaded", {"retry-after-ms": "1"}))
    ask(lunatrace.monitor(api.client(max_retries=1)))
    assert len(api.bodies()) == 2
    _, end = only_run(memory_sink)
    assert end["event"] == "end"


def test_per_call_extras_are_taken_out_and_recorded(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    client = lunatrace.monitor(api.client())
    ask(
        client,
        user_id="user-42",
        user_props={"plan": "pro"},
        tags=["weather"],
        metadata={"user_id": "user-42", "feature": "forecast"},
        name="forecast-call",
    )
    (body,) = api.bodies()
    for key in ("user_props", "tags", "name"):
        assert key not in body
    assert body["metadata"] == {"user_id": "user-42"}  # the part the Messages API takes itself
    start, _ = only_run(memory_sink)
    assert start["name"] == "forecast-call"
    assert start["userId"] == "user-42" and start["userProps"] == {"plan": "pro"}
    assert start["tags"] == ["weather"]
    assert start["metadata"] == {"user_id": "user-42", "feature": "forecast"}


def test_extras_of_the_wrong_kind_never_fail_the_call(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    answer = ask(lunatrace.monitor(api.client()), metadata="not a mapping", user_props=[1], tags=7)
    assert answer.content[0].text == "Hello there!"
    assert "metadata" not in api.bodies()[0]
    start, end = only_run(memory_sink)
    assert start["tags"] == ["7"] and end["event"] == "end"


def test_calls_nest_under_traced_functions_and_take_the_context(
    memory_sink: MemorySink, api: FakeAnthropic
) -> None:
    client = lunatrace.monitor(api.client())

    @lunatrace.trace
    def forecast(city: str) -> str:
        return str(ask(client).content[0].text)

    with lunatrace.identify("user-7"), lunatrace.tags("beta"), lunatrace.metadata({"team": "weather"}):
        forecast("Paris")
    (outer,) = [e for e in memory_sink.events if e["event"] == "start" and e["type"] != "llm"]
    assert outer["name"].endswith("forecast")
    start, _ = only_run(memory_sink)
    assert start["parentRunId"] == outer["runId"]
    assert (
        start["userId"] == "user-7" and start["tags"] == ["beta"] and start["metadata"] == {"team": "weather"}
    )


def test_an_explicit_parent(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    client = lunatrace.monitor(api.client())
    ask(client, parent="3f0c8d6e-6f7a-4d6b-9a43-0d3e6f1a2b3c")
    start, _ = only_run(memory_sink)
    assert start["parentRunId"] == "3f0c8d6e-6f7a-4d6b-9a43-0d3e6f1a2b3c"


def test_monitor_is_in_place_idempotent_and_reversible(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    client = api.client()
    unmonitored_signature = inspect.signature(client.messages.create)
    assert lunatrace.monitor(client) is client
    assert lunatrace.monitor(client) is client  # a second time changes nothing
    assert type(client) is anthropic.Anthropic
    assert inspect.signature(client.messages.create) == unmonitored_signature
    assert client.messages.create.__doc__ == type(client.messages).create.__doc__
    ask(client)
    assert len(llm_events(memory_sink)[0]) == 1  # one run, not one per monitor()
    other = api.client()
    ask(other)
    assert len(llm_events(memory_sink)[0]) == 1  # other clients are untouched
    assert lt_anthropic.unmonitor(client) is client
    assert "create" not in vars(client.messages)
    ask(client)
    assert len(llm_events(memory_sink)[0]) == 1


def test_a_vertex_client_is_monitored_the_same_way(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    api.also_at("/projects/p1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5:rawPredict")
    vertex = anthropic.AnthropicVertex(
        region="us-east5", project_id="p1", access_token="tok", base_url=api.url
    )
    assert ask(lunatrace.monitor(vertex)).content[0].text == "Hello there!"
    assert "model" not in api.provider.requests[0].body  # Vertex sends it in the path
    start, end = only_run(memory_sink)
    assert start["name"] == fa.MODEL and end["tokensUsage"] == {"prompt": 12, "completion": 7}


def test_monitor_refuses_what_is_not_an_anthropic_client() -> None:
    with pytest.raises(TypeError):
        lt_anthropic.monitor(object())


def test_raw_response_calls_are_left_alone(memory_sink: MemorySink, api: FakeAnthropic) -> None:
    client = lunatrace.monitor(api.client())
    raw = client.messages.with_raw_response.create(model=fa.REQUEST_MODEL, max_tokens=64, messages=USER)
    assert raw.parse().content[0].text == "Hello there!"
    assert llm_events(memory_sink) == ([], [])


def test_parse_is_traced_like_create_where_the_release_has_it(
    memory_sink: MemorySink, api: FakeAnthropic
) -> None:
    client = lunatrace.monitor(api.client())
    if not hasattr(type(client.messages), "parse"):  # an older release: nothing is added to it
        assert "parse" not in vars(client.messages)
        return
    parsed = client.messages.parse(model=fa.REQUEST_MODEL, max_tokens=64, messages=USER)
    assert parsed.content[0].text == "Hello there!"
    start, end = only_run(memory_sink)
    assert start["name"] == fa.MODEL and end["output"]["content"] == "Hello there!"
