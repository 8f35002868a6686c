"""Anthropic calls of a monitored client as the real Lunary server stores them.

The real ``anthropic`` client talks to the fake Messages API (tests/support/fake_anthropic.py);
lunatrace delivers to the real server, whose ``run`` rows are read back: the name Lunary
prices by (the model that answered), the token columns, the cost it computed for a
model it knows, the prompt and output as its dashboard shows them, and failed calls.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

import lunatrace
from tests.e2e.real.stored import assert_finished, current_run, row_shape, stored_runs
from tests.support import fake_anthropic as fa
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.real_lunary import Project, RealLunary

ARGS = {
    "model": fa.REQUEST_MODEL,
    "max_tokens": 128,
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
}
# Lunary's price for the claude-sonnet-4 family, in USD per million tokens (input, output).
SONNET_4_PRICES = (3, 15)


@pytest.fixture
def api() -> Iterator[FakeAnthropic]:
    for fake in fa.running():
        fake.delay_s = 0.03  # the server prices no call faster than 10 ms (it takes it for a cached one)
        yield fake


def test_calls_and_streams_are_stored_named_priced_and_nested(
    real_lunary: RealLunary, traced_to_real: Project, api: FakeAnthropic
) -> None:
    api.script(
        fa.Answer(
            content=(fa.text("Checking."), fa.tool_use("get_weather", {"city": "Paris"})),
            stop_reason="tool_use",
            usage=fa.usage(input_tokens=40, output_tokens=20),
        ),
        fa.Answer(content=(fa.text("Sunny, 21C."),), usage=fa.usage(input_tokens=60, output_tokens=8)),
    )
    client = lunatrace.monitor(api.client())
    seen: dict[str, str] = {}

    @lunatrace.trace(type="agent", name="weather-agent")
    def agent() -> str:
        seen["agent"] = current_run()
        first = client.messages.create(**ARGS, system="Use the tool.", user_id="user-9")
        messages = [
            *ARGS["messages"],
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "21C"}],
            },
        ]
        with client.messages.stream(**{**ARGS, "messages": messages}) as stream:
            return stream.get_final_text()

    assert agent() == "Sunny, 21C."
    rows = stored_runs(real_lunary, traced_to_real)
    assert row_shape(rows) == (("agent", "weather-agent", (("llm", fa.MODEL, ()), ("llm", fa.MODEL, ()))),)
    assert_finished(rows)
    called, streamed = sorted(
        (row for row in rows if row["type"] == "llm"), key=lambda row: row["created_at"]
    )
    assert called["parent_run_id"] == streamed["parent_run_id"] == seen["agent"]
    assert (called["prompt_tokens"], called["completion_tokens"]) == (40, 20)
    assert (streamed["prompt_tokens"], streamed["completion_tokens"]) == (60, 8)
    for row, (prompt, completion) in ((called, (40, 20)), (streamed, (60, 8))):
        expected = (prompt * SONNET_4_PRICES[0] + completion * SONNET_4_PRICES[1]) / 1_000_000
        assert row["cost"] == pytest.approx(expected)
    assert called["input"] == [
        {"role": "system", "content": "Use the tool."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    # The server camel-cases every key it stores (tool_calls -> toolCalls).
    call = {
        "id": "toolu_01",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    assert called["output"] == {"role": "assistant", "content": "Checking.", "toolCalls": [call]}
    assert streamed["input"][-1] == {"role": "tool", "toolCallId": "toolu_01", "content": "21C"}
    assert streamed["output"] == {"role": "assistant", "content": "Sunny, 21C."}
    assert called["params"] == {"maxTokens": 128}
    assert real_lunary.external_user(called["external_user_id"]) == "user-9"


def test_a_refused_call_is_stored_as_an_error_with_the_provider_s_message(
    real_lunary: RealLunary, traced_to_real: Project, api: FakeAnthropic
) -> None:
    api.fault(fa.status_error(429, "Number of request tokens has exceeded your rate limit."))
    client = lunatrace.monitor(api.client())
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(**ARGS)
    (row,) = stored_runs(real_lunary, traced_to_real)
    assert row["type"] == "llm" and row["name"] == fa.REQUEST_MODEL
    assert row["status"] == "error"
    assert "429" in row["error"]["message"]
    assert "Number of request tokens has exceeded your rate limit." in row["error"]["message"]
