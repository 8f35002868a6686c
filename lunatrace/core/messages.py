"""Chat messages in the OpenAI format, the shape Lunary's UI renders and prices.

Core handles plain dicts (OpenAI-style, LangChain-style ``{"type": "human"}``, or
Anthropic-style content blocks); integrations convert their framework's message classes
to dicts first and then call :func:`to_openai_message`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lunatrace.core.serialize import to_jsonable

# The roles of a thread's messages that are its input (the rest, its output).
INPUT_ROLES = frozenset({"user", "system"})

ROLE_ALIASES = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "function",
    "chat": "user",
}


def role_of(value: Any) -> str:
    """Map any framework's role or message type name to an OpenAI role."""
    if type(value) is str:
        role = ROLE_ALIASES.get(value)  # a role or type as frameworks spell it: no need to normalise
        if role is not None:
            return role
    text = str(value or "").lower()
    text = text.removesuffix("messagechunk").removesuffix("message").removesuffix("chunk")
    return ROLE_ALIASES.get(text, text or "user")


def arguments_json(arguments: Any) -> str:
    """Tool-call arguments as a JSON string (never a Python repr)."""
    if isinstance(arguments, str):
        return arguments
    try:
        return json.dumps(to_jsonable(arguments if arguments is not None else {}), ensure_ascii=False)
    except (TypeError, ValueError):
        return "{}"


def tool_call(call: Any) -> dict[str, Any]:
    """One tool call in OpenAI format, from OpenAI or LangChain (``name``/``args``) shape."""
    data = call if isinstance(call, Mapping) else to_jsonable(call)
    if not isinstance(data, Mapping):
        return {"type": "function", "function": {"name": str(data), "arguments": "{}"}}
    function = data.get("function")
    if isinstance(function, Mapping):
        name = function.get("name")
        arguments = function.get("arguments")
    else:
        name = data.get("name") or data.get("tool_name")
        arguments = data.get("args", data.get("arguments", data.get("input", data.get("tool_kwargs"))))
    out: dict[str, Any] = {
        "type": "function",
        "function": {"name": str(name or ""), "arguments": arguments_json(arguments)},
    }
    call_id = data.get("id") or data.get("tool_call_id")
    if call_id:
        out["id"] = str(call_id)
    return out


def invalid_tool_call(call: Any) -> dict[str, Any]:
    """A tool call the model got wrong (arguments that do not parse, say), in OpenAI format:
    the raw ``arguments`` string as the model wrote it, and the parse error beside it, so
    the assistant turn shows what was attempted rather than nothing."""
    data = call if isinstance(call, Mapping) else to_jsonable(call)
    out = tool_call(data)
    if isinstance(data, Mapping):
        raw = data.get("args", data.get("arguments"))
        out["function"]["arguments"] = raw if isinstance(raw, str) else arguments_json(raw)
        error = data.get("error")
        out["error"] = str(error) if error else "invalid tool call"
    return out


def content_part(part: Any) -> Any:
    """A content part in OpenAI format: text stays text, images become ``image_url``."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, Mapping):
        return to_jsonable(part)
    kind = part.get("type")
    if kind in ("text", "text-plain") or (kind is None and "text" in part):
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "image_url":
        url = part.get("image_url")
        return {"type": "image_url", "image_url": url if isinstance(url, Mapping) else {"url": str(url)}}
    if kind == "image":
        source: Mapping[str, Any] = part["source"] if isinstance(part.get("source"), Mapping) else part
        url = source.get("url")
        data = source.get("base64") or source.get("data")
        mime = source.get("mime_type") or source.get("media_type") or "image/png"
        if not url and data:
            url = f"data:{mime};base64,{data}"
        return {"type": "image_url", "image_url": {"url": str(url or "")}}
    return to_jsonable(part)


def content_of(content: Any) -> Any:
    """Message content: a string, or a list of OpenAI content parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        parts = [content_part(p) for p in content]
        parts = [p for p in parts if not (isinstance(p, Mapping) and p.get("type") == "tool_call")]
        if all(isinstance(p, Mapping) and p.get("type") == "text" for p in parts):
            return "".join(str(p["text"]) for p in parts)
        return parts
    return to_jsonable(content)


def to_openai_message(message: Any) -> dict[str, Any]:
    """Normalise one message to ``{role, content, tool_calls?, tool_call_id?, name?}``."""
    if isinstance(message, str):
        return {"role": "user", "content": message}
    if type(message) is not dict and not isinstance(message, Mapping):  # an ABC check is slow
        data = to_jsonable(message)
        if not isinstance(data, Mapping):
            return {"role": "user", "content": str(data)}
        message = data
    role = role_of(message.get("role") or message.get("type"))
    if role == "user" and message.get("type") == "chat" and message.get("role"):
        role = str(message["role"])
    content = message.get("content")
    out: dict[str, Any] = {"role": role, "content": content if type(content) is str else content_of(content)}
    if out["content"] is None and role != "assistant":
        out["content"] = ""
    extra = message.get("additional_kwargs")
    extra = extra if type(extra) is dict or isinstance(extra, Mapping) else {}
    calls = message.get("tool_calls") or extra.get("tool_calls")
    if calls and isinstance(calls, Sequence) and not isinstance(calls, str | bytes | bytearray):
        out["tool_calls"] = [tool_call(c) for c in calls]
    invalid = message.get("invalid_tool_calls")
    if invalid and isinstance(invalid, Sequence) and not isinstance(invalid, str | bytes | bytearray):
        out["tool_calls"] = [*out.get("tool_calls", ()), *(invalid_tool_call(c) for c in invalid)]
    function_call = extra.get("function_call") or message.get("function_call")
    if function_call and isinstance(function_call, Mapping):
        out["function_call"] = {
            "name": str(function_call.get("name", "")),
            "arguments": arguments_json(function_call.get("arguments")),
        }
    if message.get("tool_call_id"):
        out["tool_call_id"] = str(message["tool_call_id"])
    if message.get("name"):
        out["name"] = str(message["name"])
    return out


def to_openai_messages(
    messages: Any, convert: Callable[[Any], dict[str, Any]] = to_openai_message
) -> list[dict[str, Any]]:
    """Normalise a message list (or a single message or string) to OpenAI format.

    ``convert`` turns one message; an integration passes its own for framework objects.
    """
    if messages is None:
        return []
    if type(messages) is list:  # the common case, without an ABC check
        return [convert(m) for m in messages]
    if isinstance(messages, str | Mapping) or not isinstance(messages, Sequence):
        return [convert(messages)]
    return [convert(m) for m in messages]
