"""The Responses API (``responses.create`` / ``parse``) -> an llm run in OpenAI chat format.

The Responses API speaks in *items* rather than messages. The input (``instructions``,
then ``input``: a string or a list of items) becomes messages: ``instructions`` a system
message, message items messages of their role, ``function_call`` items an assistant
message's tool calls, ``function_call_output`` items tool messages. The output items
become one assistant message: the text of its message items, its function calls (and the
provider's own tool calls, such as ``web_search_call``, named by their type) as tool
calls, and the reasoning summaries, when the model gave any, under ``reasoning``.

A stream (``stream=True``) ends with a ``response.completed`` event carrying the whole
response, usage included; a stream cut short keeps the text and items received so far.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from lunatrace.core.messages import content_of, role_of, tool_call
from lunatrace.core.serialize import Deferred
from lunatrace.core.usage import usage_from_mapping
from lunatrace.integrations.openai.common import field, plain, request_params, schema_format
from lunatrace.integrations.providers import Answer, Request
from lunatrace.integrations.providers.params import given, snapshot

_PART_TEXTS = frozenset({"input_text", "output_text", "text", "summary_text"})
_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_DELTA_EVENTS = frozenset(
    {"response.output_text.delta", "response.refusal.delta", "response.function_call_arguments.delta"}
)


# --- input ---------------------------------------------------------------------------


def _part(part: Any) -> Any:
    """A content part of an input item in OpenAI chat format."""
    if not isinstance(part, Mapping):
        return part
    kind = part.get("type")
    if kind in _PART_TEXTS:
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal", ""))}
    if kind == "input_image" and part.get("image_url"):
        return {"type": "image_url", "image_url": {"url": str(part["image_url"])}}
    return part


def _content(content: Any) -> Any:
    if isinstance(content, Sequence) and not isinstance(content, str):
        return content_of([_part(part) for part in content])
    return content_of(content)


def _tool_call(item: Mapping[str, Any]) -> dict[str, Any]:
    kind = item.get("type")
    if kind == "function_call":
        name, arguments = str(item.get("name", "")), item.get("arguments")
    else:  # a built-in tool's call (web_search_call, file_search_call...): named by its type
        name = str(kind)
        arguments = {key: value for key, value in item.items() if key not in ("type", "id", "status")}
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, default=str)
    return tool_call({"id": item.get("call_id") or item.get("id"), "name": name, "arguments": text})


def _summary(item: Mapping[str, Any]) -> str:
    return "".join(str(field(part, "text") or "") for part in item.get("summary") or ())


def input_messages(instructions: Any, items: Any) -> list[dict[str, Any]]:
    """``instructions`` and ``input`` as OpenAI-format messages (see the module's docstring)."""
    messages: list[dict[str, Any]] = []
    if given(instructions):
        messages.append({"role": "system", "content": _content(instructions)})
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    for raw in items if isinstance(items, Sequence) else ():
        item = plain(raw)
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        if kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item.get("call_id", "")),
                    "content": output if isinstance(output, str) else _content(output),
                }
            )
        elif kind == "reasoning" or kind == "item_reference":
            continue  # opaque to anyone reading the conversation
        elif "role" in item:
            messages.append({"role": role_of(item["role"]), "content": _content(item.get("content"))})
        elif kind is not None:
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant" or last.get("content"):
                last = {"role": "assistant", "content": None, "tool_calls": []}
                messages.append(last)
            last.setdefault("tool_calls", []).append(_tool_call(item))
    return messages


# --- output --------------------------------------------------------------------------


def output_message(items: Any) -> dict[str, Any]:
    """A response's output items as one assistant message."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[str] = []
    refusals: list[str] = []
    for raw in items or ():
        item = plain(raw)
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if isinstance(part, Mapping) and part.get("type") == "refusal":
                    refusals.append(str(part.get("refusal", "")))
                elif isinstance(part, Mapping):
                    texts.append(str(part.get("text", "")))
        elif kind == "reasoning":
            summary = _summary(item)
            if summary:
                reasoning.append(summary)
        elif kind is not None:
            calls.append(_tool_call(item))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning"] = "\n\n".join(reasoning)
    if refusals:
        message["refusal"] = "".join(refusals)
    return message


def _answer_of(response: Any) -> Answer:
    status = field(response, "status")
    metadata = {"status": status} if status not in (None, "completed") else None
    return Answer(
        Deferred(output_message, list(field(response, "output") or ())),
        usage_from_mapping(field(response, "usage")),
        field(response, "model") or None,
        metadata,
    )


class ResponsesEndpoint:
    run_type = "llm"

    def request(self, kwargs: Mapping[str, Any]) -> Request | None:
        params = request_params(kwargs)
        if params is None:
            return None
        text_format = kwargs.get("text_format")  # parse()'s pydantic class
        text = kwargs.get("text")
        if isinstance(text_format, type):
            params["response_format"] = Deferred(schema_format, text_format)
        elif isinstance(text, Mapping) and text.get("format") is not None:
            params["response_format"] = text["format"]
        reasoning = kwargs.get("reasoning")
        if isinstance(reasoning, Mapping) and reasoning.get("effort"):
            params["reasoning_effort"] = reasoning["effort"]
        prompt = (kwargs.get("instructions"), snapshot(kwargs, "input"))
        return Request(kwargs.get("model"), Deferred(_input, prompt), params)

    def answer(self, result: Any) -> Answer:
        return _answer_of(result)

    def accumulator(self, kwargs: Mapping[str, Any]) -> ResponsesAccumulator | None:
        return ResponsesAccumulator() if kwargs.get("stream") is True else None


def _input(pair: tuple[Any, Any]) -> list[dict[str, Any]]:
    return input_messages(*pair)


class ResponsesAccumulator:
    """Collects a Responses stream: the final response if it came, else the pieces."""

    __slots__ = ("_done_items", "_final", "_text", "model")

    def __init__(self) -> None:
        self.model: str | None = None
        self._final: Any = None
        self._text: list[str] = []
        self._done_items: list[Any] = []

    def add(self, item: Any) -> bool:
        kind = field(item, "type")
        if kind in _DELTA_EVENTS:
            delta = field(item, "delta")
            if kind == "response.output_text.delta" and delta:
                self._text.append(delta)
            return bool(delta)
        if kind == "response.output_item.done":
            self._done_items.append(field(item, "item"))
        elif kind in _FINAL_EVENTS:
            self._final = field(item, "response")
        if self.model is None:
            self.model = field(field(item, "response"), "model") or None  # response.created
        return False

    def answer(self) -> Answer:
        if self._final is not None:
            return _answer_of(self._final)
        message = output_message(self._done_items)
        if not message["content"] and self._text:
            message["content"] = "".join(self._text)
        return Answer(message, None, self.model)
