"""OpenAI calls of a monitored client as the real Lunary server stores them.

The real ``openai`` client talks to the fake OpenAI API (tests/support/fake_openai.py);
lunatrace delivers to the real server, whose ``run`` rows are read back: the name Lunary
prices by (the model that answered), the token columns, the cost it computes for a model
it knows, the prompt and output as its dashboard shows them, embeddings, and failures.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

import lunatrace
from tests.e2e.real.stored import assert_finished, current_run, row_shape, stored_runs
from tests.support import fake_openai as fo
from tests.support.fake_openai import FakeOpenAI
from tests.support.real_lunary import Project, RealLunary

QUESTION = [{"role": "user", "content": "Weather in Paris?"}]
# Lunary's price for gpt-4o-mini-2024-07-18, in USD per million tokens (prompt, completion).
GPT_4O_MINI_PRICES = (0.15, 0.6)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with fo.running() as server:
        server.script.delay_s = 0.03  # the server prices no call faster than 10 ms (a cached one)
        yield server


def test_calls_and_streams_are_stored_named_priced_and_nested(
    real_lunary: RealLunary, traced_to_real: Project, fake: FakeOpenAI
) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    seen: dict[str, str] = {}

    @lunatrace.trace(type="agent", name="weather-agent")
    def agent() -> str:
        seen["agent"] = current_run()
        fake.script.tool_calls = [("get_weather", '{"city": "Paris"}')]
        first = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, user_id="user-9")
        call = first.choices[0].message.tool_calls[0]
        fake.script.tool_calls, fake.script.usage = [], (30, 9, 0)
        messages = [
            *QUESTION,
            first.choices[0].message,
            {"role": "tool", "tool_call_id": call.id, "content": "21C"},
        ]
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert agent() == fo.Script().text
    rows = stored_runs(real_lunary, traced_to_real)
    model = fo.ANSWERING_MODEL
    assert row_shape(rows) == (("agent", "weather-agent", (("llm", model, ()), ("llm", model, ()))),)
    assert_finished(rows)
    called, streamed = sorted(
        (row for row in rows if row["type"] == "llm"), key=lambda row: row["created_at"]
    )
    assert called["parent_run_id"] == streamed["parent_run_id"] == seen["agent"]
    assert (called["prompt_tokens"], called["completion_tokens"]) == (12, 7)
    assert (streamed["prompt_tokens"], streamed["completion_tokens"]) == (30, 9)
    for row, (prompt, completion) in ((called, (12, 7)), (streamed, (30, 9))):
        expected = (prompt * GPT_4O_MINI_PRICES[0] + completion * GPT_4O_MINI_PRICES[1]) / 1_000_000
        assert row["cost"] == pytest.approx(expected)
    assert called["input"] == QUESTION
    # The server camel-cases every key it stores (tool_calls -> toolCalls).
    tool_call = {
        "id": "call_0",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    assert called["output"] == {"role": "assistant", "content": None, "toolCalls": [tool_call]}
    assert streamed["input"][1] == {"role": "assistant", "content": None, "toolCalls": [tool_call]}
    assert streamed["input"][2] == {"role": "tool", "toolCallId": "call_0", "content": "21C"}
    assert streamed["output"] == {"role": "assistant", "content": fo.Script().text}
    assert streamed["metadata"]["timeToFirstTokenMs"] >= 0
    assert real_lunary.external_user(called["external_user_id"]) == "user-9"


def test_a_stream_without_usage_is_stored_with_the_flagged_estimate(
    real_lunary: RealLunary, traced_to_real: Project, fake: FakeOpenAI
) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True):
        pass
    (row,) = stored_runs(real_lunary, traced_to_real)
    assert row["name"] == fo.ANSWERING_MODEL and row["status"] == "success"
    assert row["metadata"]["tokensEstimated"] is True
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 and row["cost"] > 0


def test_a_responses_call_and_embeddings(
    real_lunary: RealLunary, traced_to_real: Project, fake: FakeOpenAI
) -> None:
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    client.responses.create(model="gpt-4o-mini", instructions="Be brief.", input="Capital of France?")
    client.embeddings.create(model="text-embedding-3-small", input=["a cat", "a dog"])
    rows = {row["type"]: row for row in stored_runs(real_lunary, traced_to_real)}
    assert set(rows) == {"llm", "embed"}
    assert rows["llm"]["name"] == fo.ANSWERING_MODEL
    assert rows["llm"]["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert rows["llm"]["output"] == {"role": "assistant", "content": fo.Script().text}
    assert (rows["llm"]["prompt_tokens"], rows["llm"]["completion_tokens"]) == (12, 7)
    assert rows["embed"]["name"] == fo.EMBEDDING_MODEL and rows["embed"]["status"] == "success"
    assert rows["embed"]["output"] == {"embeddings": 2, "dimensions": 8}


def test_a_refused_call_is_stored_as_an_error_with_the_provider_s_message(
    real_lunary: RealLunary, traced_to_real: Project, fake: FakeOpenAI
) -> None:
    fake.queue(
        fo.CHAT, fo.error(429, "Rate limit reached for gpt-4o-mini.", "requests", "rate_limit_exceeded")
    )
    client = lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    (row,) = stored_runs(real_lunary, traced_to_real)
    assert row["type"] == "llm" and row["name"] == "gpt-4o-mini"
    assert row["status"] == "error"
    assert (
        "429" in row["error"]["message"] and "Rate limit reached for gpt-4o-mini." in row["error"]["message"]
    )
