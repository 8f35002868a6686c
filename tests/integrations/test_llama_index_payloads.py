"""What an llm run carries from LlamaIndex objects: provider usage spellings, tool calls,
tool messages, stream failures; which thread converts them; and what importing the
integration costs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, TextBlock, ToolCallBlock

from lunatrace.integrations.llama_index import instrument, uninstrument
from tests.integrations import li_fakes as F
from tests.integrations.li_fakes import delivered, finish, starts_of


@pytest.fixture(autouse=True)
def instrumented() -> Iterator[None]:
    instrument()
    yield
    uninstrument()


OPENAI_RAW = SimpleNamespace(
    model="gpt-4o-mini-2024-07-18",
    usage=SimpleNamespace(prompt_tokens=9, completion_tokens=3, prompt_tokens_details={"cached_tokens": 2}),
)


@pytest.mark.parametrize(
    ("raw", "extra", "usage"),
    [
        pytest.param(OPENAI_RAW, {}, {"prompt": 9, "completion": 3, "promptCached": 2}, id="openai-object"),
        pytest.param(
            {"usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 4}},
            {},
            {"prompt": 10, "completion": 3, "promptCached": 4},
            id="anthropic",
        ),
        pytest.param(
            {"usage_metadata": {"prompt_token_count": 5, "candidates_token_count": 2}},
            {},
            {"prompt": 5, "completion": 2},
            id="gemini",
        ),
        pytest.param(
            None, {"prompt_tokens": 9, "completion_tokens": 3}, {"prompt": 9, "completion": 3}, id="kwargs"
        ),
    ],
)
def test_provider_usage_spellings(traced_to_server: Any, raw: Any, extra: Any, usage: dict[str, int]) -> None:
    F.ScriptedLLM(script=["hi"], raw=raw, extra=extra).complete("hello")

    events = delivered(traced_to_server)
    end = finish(events, starts_of(events)[0]["runId"])
    assert end["tokensUsage"] == usage
    assert "tokensEstimated" not in end.get("metadata", {})


def test_no_usage_reported_gives_a_flagged_estimate(traced_to_server: Any) -> None:
    F.ScriptedLLM(script=["four words of answer"], raw=None).complete("hello there")

    events = delivered(traced_to_server)
    end = finish(events, starts_of(events)[0]["runId"])
    assert 4 <= end["tokensUsage"]["completion"] <= 8  # four words, plus message framing
    assert end["tokensUsage"]["prompt"] >= 2
    assert end["metadata"] == {"tokensEstimated": True}


def test_tool_call_blocks_and_tool_messages_in_openai_format(traced_to_server: Any) -> None:
    llm = F.tool_calling_llm()
    history = [
        ChatMessage(role="user", content="weather?"),
        ChatMessage(
            role="assistant",
            blocks=[
                TextBlock(text="Checking."),
                ToolCallBlock(tool_call_id="c1", tool_name="get_weather", tool_kwargs={"city": "Paris"}),
            ],
        ),
        ChatMessage(
            role="tool", content="sunny", additional_kwargs={"tool_call_id": "c1", "name": "get_weather"}
        ),
    ]
    llm.chat(history)

    events = delivered(traced_to_server)
    start = starts_of(events)[0]
    assert start["input"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "toolCalls": [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    "id": "c1",
                }
            ],
        },
        {"role": "tool", "content": "sunny", "toolCallId": "c1", "name": "get_weather"},
    ]
    assert json.loads(start["input"][1]["toolCalls"][0]["function"]["arguments"]) == {"city": "Paris"}


_ran_on: list[tuple[str, str]] = []  # (what, thread name) of the application code below


class _Probe:
    """An application object in a tool call's arguments: its repr says where it runs."""

    __slots__ = ()

    def __repr__(self) -> str:
        _ran_on.append(("repr", threading.current_thread().name))
        return "<probe>"


class _ProbeToolMetadata:
    """A tool's metadata whose OpenAI schema (pydantic, in LlamaIndex) says where it is built."""

    def to_openai_tool(self, skip_length_check: bool = False) -> dict[str, Any]:
        _ran_on.append(("schema", threading.current_thread().name))
        return {"type": "function", "function": {"name": "probe"}}


def test_messages_and_tool_schemas_are_converted_on_the_worker_as_they_were_at_the_call(
    traced_to_server: Any,
) -> None:
    _ran_on.clear()
    call = ToolCallBlock(tool_call_id="c1", tool_name="get_weather", tool_kwargs={"city": _Probe()})
    history = [ChatMessage(role="user", content="weather?"), ChatMessage(role="assistant", blocks=[call])]
    F.tool_calling_llm().chat(history, tools=[SimpleNamespace(metadata=_ProbeToolMetadata())])
    assert _ran_on == []  # none of it ran in the call
    history.append(ChatMessage(role="user", content="appended after the call"))
    history[0].content = "changed after the call"

    events = delivered(traced_to_server)
    assert sorted(_ran_on) == [("repr", "lunatrace-worker"), ("schema", "lunatrace-worker")]
    start = starts_of(events)[0]
    assert [m["content"] for m in start["input"]] == ["weather?", None]  # as it was at the call
    assert start["input"][1]["toolCalls"][0]["function"]["arguments"] == '{"city": "<probe>"}'
    assert start["params"]["tools"] == [{"type": "function", "function": {"name": "probe"}}]


def test_a_stream_failing_midway_is_an_error_on_its_llm_run(traced_to_server: Any) -> None:
    llm = F.ScriptedLLM(script=["one two three"], fail_with=ConnectionError("stream cut"), fail_after_words=2)
    received = []
    with pytest.raises(ConnectionError):
        for chunk in llm.stream_complete("count"):
            received.append(chunk.delta)
    assert received == ["one", " two"]

    events = delivered(traced_to_server)
    error = finish(events, starts_of(events)[0]["runId"])
    assert error["event"] == "error" and error["error"]["message"] == "ConnectionError: stream cut"
    assert "stream cut" in error["error"]["stack"]


def test_importing_lunatrace_and_instrumenting_stay_cheap() -> None:
    code = (
        "import sys, lunatrace\n"
        "assert not [m for m in sys.modules if m.startswith('llama_index')], 'import lunatrace'\n"
        "from lunatrace.integrations.llama_index import instrument, instrumentation\n"
        "instrument()\n"
        "assert 'llama_index.core' not in sys.modules, 'instrument()'\n"
        "from llama_index_instrumentation import get_dispatcher\n"
        "span_handler, event_handler = instrumentation._handlers\n"
        "assert span_handler in get_dispatcher().span_handlers, 'not instrumented'\n"
        "assert event_handler in get_dispatcher().event_handlers, 'not instrumented'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
