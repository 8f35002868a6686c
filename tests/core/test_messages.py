"""Chat messages of any dict shape normalised to the OpenAI format."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lunatrace.core.messages import (
    arguments_json,
    content_of,
    role_of,
    to_openai_message,
    to_openai_messages,
    tool_call,
)


@pytest.mark.parametrize(
    ("value", "role"),
    [
        ("human", "user"),
        ("HumanMessage", "user"),
        ("AIMessageChunk", "assistant"),
        ("ai", "assistant"),
        ("SystemMessage", "system"),
        ("developer", "system"),
        ("ToolMessage", "tool"),
        ("FunctionMessage", "function"),
        ("critic", "critic"),
        (None, "user"),
        ("", "user"),
    ],
)
def test_roles(value: Any, role: str) -> None:
    assert role_of(value) == role


def test_openai_message_passes_through() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q":"x"}'}}
        ],
    }
    assert to_openai_message(message) == message


def test_langchain_style_dict_with_tool_calls() -> None:
    message = {
        "type": "ai",
        "content": "",
        "tool_calls": [{"name": "get_weather", "args": {"city": "Paris", "days": [1, 2]}, "id": "c9"}],
    }
    out = to_openai_message(message)
    assert out == {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": [1, 2]}'},
                "id": "c9",
            }
        ],
    }
    assert json.loads(out["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris", "days": [1, 2]}


def test_tool_result_keeps_its_call_id_and_name() -> None:
    out = to_openai_message({"type": "tool", "content": "22°C", "tool_call_id": "c9", "name": "get_weather"})
    assert out == {"role": "tool", "content": "22°C", "tool_call_id": "c9", "name": "get_weather"}


def test_tool_calls_in_additional_kwargs_and_legacy_function_call() -> None:
    message = {
        "type": "ai",
        "content": "thinking",
        "additional_kwargs": {
            "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": {"x": 1}}}],
            "function_call": {"name": "legacy", "arguments": {"y": 2}},
        },
    }
    out = to_openai_message(message)
    assert out["tool_calls"] == [
        {"type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}, "id": "a"}
    ]
    assert out["function_call"] == {"name": "legacy", "arguments": '{"y": 2}'}


def test_chat_message_with_custom_role() -> None:
    assert to_openai_message({"type": "chat", "role": "critic", "content": "meh"}) == {
        "role": "critic",
        "content": "meh",
    }


def test_text_parts_are_joined_and_images_become_image_url() -> None:
    assert content_of([{"type": "text", "text": "a"}, "b", {"text": "c"}]) == "abc"
    parts = content_of(
        [
            {"type": "text", "text": "look:"},
            {"type": "image_url", "image_url": "https://x/img.png"},
            {"type": "image", "source": {"media_type": "image/jpeg", "data": "QUJD"}},
            {"type": "tool_call", "id": "dropped"},
        ]
    )
    assert parts == [
        {"type": "text", "text": "look:"},
        {"type": "image_url", "image_url": {"url": "https://x/img.png"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
    ]


def test_missing_content_is_empty_except_for_assistant_tool_calls() -> None:
    assert to_openai_message({"role": "user"}) == {"role": "user", "content": ""}
    assert to_openai_message({"role": "assistant"}) == {"role": "assistant", "content": None}


def test_arguments_are_always_a_json_string() -> None:
    assert arguments_json('{"already": "json"}') == '{"already": "json"}'
    assert arguments_json(None) == "{}"
    assert json.loads(arguments_json({"when": b"bytes", "s": {1}})) == {"when": "bytes", "s": [1]}


def test_tool_call_from_an_object() -> None:
    class Call:
        def __init__(self) -> None:
            self.name = "lookup"
            self.args = {"id": 3}
            self.id = "t1"

    assert tool_call(Call()) == {
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"id": 3}'},
        "id": "t1",
    }


def test_message_lists_strings_and_objects() -> None:
    assert to_openai_messages(None) == []
    assert to_openai_messages("hi") == [{"role": "user", "content": "hi"}]
    assert to_openai_messages({"role": "system", "content": "s"}) == [{"role": "system", "content": "s"}]
    assert to_openai_messages([{"type": "human", "content": "a"}, "b"]) == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ]

    class Msg:
        def __init__(self) -> None:
            self.type = "ai"
            self.content = "from an object"

    assert to_openai_message(Msg()) == {"role": "assistant", "content": "from an object"}
    assert to_openai_message(42) == {"role": "user", "content": "42"}


_json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
_message_like = st.fixed_dictionaries(
    {},
    optional={
        "role": _json_like,
        "type": st.one_of(st.sampled_from(["human", "ai", "tool", "chat", "system"]), _json_like),
        "content": _json_like,
        "tool_calls": _json_like,
        "additional_kwargs": _json_like,
        "function_call": _json_like,
        "tool_call_id": _json_like,
        "name": _json_like,
    },
)


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(st.one_of(_message_like, _json_like), max_size=4))
def test_any_message_shape_normalises_without_raising(messages: list[Any]) -> None:
    out = to_openai_messages(messages)
    assert len(out) == len(messages)
    for message in out:
        assert isinstance(message["role"], str) and message["role"]
        for call in message.get("tool_calls", []):
            assert isinstance(call["function"]["arguments"], str)
            json.dumps(call)
        json.dumps(message, allow_nan=False)
