"""Anthropic Messages API values -> the fields of a Lunary llm run (see docs/anthropic.md).

Every function here is pure and reads both shapes a value can come in: the plain dicts an
application writes (``{"role": "user", "content": [...]}``) and the SDK's pydantic
objects, which applications pass back as history (``{"role": "assistant", "content":
response.content}``). Anthropic keeps the system prompt beside the messages, puts tool
calls and tool results in content blocks, and counts cached prompt tokens apart from the
others; Lunary renders and prices OpenAI chat messages, so each is translated:

- ``system`` (a string or text blocks) becomes a leading ``system`` message;
- ``tool_use`` blocks become the assistant's ``tool_calls`` (arguments as a JSON string),
  ``tool_result`` blocks become ``tool`` messages placed before the rest of their turn;
- ``thinking`` blocks become the message's ``thinking`` text;
- the prompt count is every input token (uncached, written to the cache, read from it),
  and ``promptCached`` the ones read from the cache, which is what Lunary discounts.

Nothing here raises on an unexpected shape: an unknown block is kept as plain data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lunatrace.core.messages import content_part, tool_call
from lunatrace.core.serialize import to_jsonable
from lunatrace.core.usage import Usage
from lunatrace.integrations.providers.params import given, pick

# Request keyword -> OpenAI parameter name. Only these are recorded: headers, timeouts and
# the client's own settings never reach ``params``.
_PARAM_NAMES = {
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "stop_sequences": "stop",
    "tools": "tools",
    "tool_choice": "tool_choice",
    "thinking": "thinking",
    "service_tier": "service_tier",
    "output_config": "output_config",
    "inference_geo": "inference_geo",
    "speed": "speed",
}
# Tool calls: what the model asked for on the client's side, and on Anthropic's (web search...).
_TOOL_CALL_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})
REDACTED_THINKING = "[redacted thinking]"


def field(value: Any, key: str) -> Any:
    """``value[key]`` of a dict, or ``value.key`` of an SDK object; ``None`` when absent."""
    if isinstance(value, Mapping):
        return value.get(key)
    try:
        return getattr(value, key, None)
    except Exception:  # noqa: BLE001 - an object's property may raise anything: no value
        return None


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


# --- request ---------------------------------------------------------------------------


def request_model(kwargs: Mapping[str, Any]) -> str | None:
    model = kwargs.get("model")
    return str(model) if given(model) and model else None


def openai_tool_choice(choice: Any) -> Any:
    """Anthropic's ``tool_choice`` under OpenAI's values: ``any`` is ``required``, a named
    tool is ``{"type": "function", "function": {"name": ...}}``."""
    kind = field(choice, "type")
    if kind in ("auto", "none"):
        return kind
    if kind == "any":
        return "required"
    if kind == "tool":
        return {"type": "function", "function": {"name": str(field(choice, "name") or "")}}
    return to_jsonable(choice)


def request_params(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's parameters under OpenAI names, from its keywords and then from
    ``extra_body`` (where parameters the SDK release has no keyword for are passed)."""
    params = pick(kwargs, _PARAM_NAMES)
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping):
        params = {**pick(extra, _PARAM_NAMES), **params}
    choice = kwargs.get("tool_choice")
    if not given(choice) and isinstance(extra, Mapping):
        choice = extra.get("tool_choice")
    if given(choice):
        if field(choice, "disable_parallel_tool_use"):
            params["parallel_tool_calls"] = False
        params["tool_choice"] = openai_tool_choice(choice)
    return params


def _block_text(content: Any) -> Any:
    """A tool result's content (a string, or text and image blocks) as message content."""
    if content is None or isinstance(content, str):
        return content or ""
    if not _is_list(content):
        return to_jsonable(content)
    joined = _joined([_input_part(block) for block in content])
    return "" if joined is None else joined


def _input_part(block: Any) -> Any:
    """A user turn's content block as an OpenAI content part (text, image), else as given."""
    kind = field(block, "type")
    if kind == "text":
        return {"type": "text", "text": str(field(block, "text") or "")}
    if kind == "image":
        source = field(block, "source")
        source_type = field(source, "type")
        if source_type == "base64":
            media, data = field(source, "media_type"), field(source, "data")
            return content_part({"type": "image", "source": {"media_type": media, "data": data}})
        if source_type == "url":
            return {"type": "image_url", "image_url": {"url": str(field(source, "url") or "")}}
    return content_part(to_jsonable(block))


def _tool_call(block: Any) -> dict[str, Any]:
    """A ``tool_use`` block as an OpenAI tool call (its input as a JSON string)."""
    return tool_call({"id": field(block, "id"), "name": field(block, "name"), "input": field(block, "input")})


def _thinking_text(block: Any) -> str:
    if field(block, "type") == "redacted_thinking":
        return REDACTED_THINKING
    return str(field(block, "thinking") or "")


def _joined(parts: list[Any]) -> Any:
    """Content parts as one string when they are all text, else the list (``None``: none)."""
    if not parts:
        return None
    if all(isinstance(p, Mapping) and p.get("type") == "text" for p in parts):
        return "".join(str(p["text"]) for p in parts)
    return parts


def assistant_message(blocks: Any) -> dict[str, Any]:
    """An assistant turn's content blocks as one OpenAI assistant message: its text (or
    parts), ``tool_calls`` and ``thinking``. Content is ``None`` when there is only a call."""
    if isinstance(blocks, str):
        return {"role": "assistant", "content": blocks}
    parts: list[Any] = []
    calls: list[dict[str, Any]] = []
    thinking: list[str] = []
    for block in blocks if _is_list(blocks) else ():
        kind = field(block, "type")
        if kind == "text":
            parts.append({"type": "text", "text": str(field(block, "text") or "")})
        elif kind in _TOOL_CALL_BLOCKS:
            calls.append(_tool_call(block))
        elif kind in _THINKING_BLOCKS:
            thinking.append(_thinking_text(block))
        else:  # a server tool's result, a container upload...: kept as plain data
            parts.append(to_jsonable(block))
    message: dict[str, Any] = {"role": "assistant", "content": _joined(parts)}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["thinking"] = "\n\n".join(thinking)
    return message


def _user_messages(role: str, content: Any) -> list[dict[str, Any]]:
    """A user turn: its ``tool_result`` blocks as ``tool`` messages (in order, first, as
    OpenAI wants results right after the calls), then the rest of the turn, if any."""
    if content is None or isinstance(content, str):
        return [{"role": role, "content": content or ""}]
    if not _is_list(content):
        return [{"role": role, "content": to_jsonable(content)}]
    out: list[dict[str, Any]] = []
    parts: list[Any] = []
    for block in content:
        if field(block, "type") == "tool_result":
            result: dict[str, Any] = {
                "role": "tool",
                "tool_call_id": str(field(block, "tool_use_id") or ""),
                "content": _block_text(field(block, "content")),
            }
            if field(block, "is_error"):
                result["is_error"] = True
            out.append(result)
        else:
            parts.append(_input_part(block))
    rest = _joined(parts)
    if rest is not None or not out:
        out.append({"role": role, "content": rest if rest is not None else ""})
    return out


def system_messages(system: Any) -> list[dict[str, Any]]:
    """The ``system`` keyword (a string, or text blocks) as one system message."""
    if not given(system) or not system:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if _is_list(system):
        texts = [str(field(block, "text") or "") for block in system]
        return [{"role": "system", "content": "\n\n".join(texts) if len(texts) > 1 else texts[0]}]
    return [{"role": "system", "content": to_jsonable(system)}]


def input_messages(system: Any, messages: Any) -> list[dict[str, Any]]:
    """A call's prompt as OpenAI chat messages: the system prompt, then every turn."""
    out = system_messages(system)
    if not given(messages) or messages is None:
        return out
    for message in (
        messages if isinstance(messages, Iterable) and not isinstance(messages, str | Mapping) else ()
    ):
        role = str(field(message, "role") or "user")
        content = field(message, "content")
        if role == "assistant":
            out.append(assistant_message(content))
        else:
            out.extend(_user_messages(role, content))
    return out


# --- response --------------------------------------------------------------------------


def output_message(message: Any) -> dict[str, Any]:
    """A ``Message`` (or its dict) as the run's output: one OpenAI assistant message."""
    return assistant_message(field(message, "content"))


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return 0
    return max(number, 0)


def usage_of(usage: Any) -> Usage | None:
    """Anthropic's ``usage`` as ``{prompt, completion, promptCached}``.

    ``input_tokens`` counts only the tokens neither written to nor read from the cache:
    the prompt is their sum with ``cache_creation_input_tokens`` and
    ``cache_read_input_tokens``, as OpenAI's ``prompt_tokens`` includes its cached tokens.
    """
    if usage is None:
        return None
    prompt, completion = field(usage, "input_tokens"), field(usage, "output_tokens")
    if prompt is None and completion is None:
        return None
    read = _count(field(usage, "cache_read_input_tokens"))
    written = _count(field(usage, "cache_creation_input_tokens"))
    out: Usage = {"prompt": _count(prompt) + written + read, "completion": _count(completion)}
    if read:
        out["promptCached"] = read
    return out


def usage_metadata(usage: Any, stop_reason: Any) -> dict[str, Any]:
    """What a run's end adds to its metadata: the tokens written to the prompt cache (they
    cost more than others, and ``tokensUsage`` has no field for them) and why it stopped."""
    out: dict[str, Any] = {}
    written = _count(field(usage, "cache_creation_input_tokens")) if usage is not None else 0
    if written:
        out["cacheCreationInputTokens"] = written
    if stop_reason:
        out["stopReason"] = str(stop_reason)
    return out
