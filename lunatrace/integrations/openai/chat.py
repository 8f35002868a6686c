"""Chat Completions (``chat.completions.create`` / ``parse``) -> an llm run.

The input is the request's messages, already in OpenAI format (copied on the caller's
thread, since applications append the answer to the very list they sent; normalised on
the worker). The output is the assistant message, or the list of them for ``n > 1``.
A stream's chunks are joined per choice: content, refusal and tool calls (whose
arguments arrive in pieces); its usage is the final chunk's, which OpenAI sends only
with ``stream_options={"include_usage": True}`` (without it core estimates the tokens
and flags the estimate).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lunatrace.core.messages import to_openai_message, to_openai_messages, tool_call
from lunatrace.core.serialize import Deferred
from lunatrace.core.usage import usage_from_mapping
from lunatrace.integrations.openai.common import field, plain, request_params, schema_format
from lunatrace.integrations.providers import Answer, Request
from lunatrace.integrations.providers.params import snapshot


def _message(message: Any) -> dict[str, Any]:
    """A message (a dict, or the client's ``ChatCompletionMessage``) in OpenAI format."""
    return to_openai_message(plain(message))


def _messages(messages: Any) -> list[dict[str, Any]]:
    return to_openai_messages(messages, _message)


def _choices_output(choices: list[Any]) -> Any:
    messages = [_message(field(choice, "message")) for choice in choices]
    return messages[0] if len(messages) == 1 else messages


class ChatEndpoint:
    run_type = "llm"

    def request(self, kwargs: Mapping[str, Any]) -> Request | None:
        params = request_params(kwargs)
        if params is None:
            return None
        if isinstance(params.get("response_format"), type):
            params["response_format"] = Deferred(schema_format, params["response_format"])
        return Request(kwargs.get("model"), Deferred(_messages, snapshot(kwargs, "messages")), params)

    def answer(self, result: Any) -> Answer:
        return Answer(
            Deferred(_choices_output, list(field(result, "choices") or ())),
            usage_from_mapping(field(result, "usage")),
            field(result, "model") or None,
        )

    def accumulator(self, kwargs: Mapping[str, Any]) -> ChatAccumulator | None:
        return ChatAccumulator() if kwargs.get("stream") is True else None


class _Choice:
    """One choice of a stream, as its chunks arrive."""

    __slots__ = ("calls", "parts", "refusal")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.parts) or None}
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.calls:
            message["tool_calls"] = [_call(*self.calls[index]) for index in sorted(self.calls)]
        return message


def _call(call_id: str | None, name: str, pieces: list[str]) -> dict[str, Any]:
    return tool_call({"id": call_id, "name": name, "arguments": "".join(pieces)})


class ChatAccumulator:
    """Joins a Chat Completions stream (``ChatCompletionChunk`` items)."""

    __slots__ = ("_choices", "_usage", "model")

    def __init__(self) -> None:
        self.model: str | None = None
        self._choices: dict[int, _Choice] = {}
        self._usage: Any = None

    def add(self, item: Any) -> bool:
        if self.model is None:
            self.model = field(item, "model") or None  # Azure's first chunk has none
        usage = field(item, "usage")
        if usage is not None:
            self._usage = usage
        carried = False
        for choice in field(item, "choices") or ():
            delta = field(choice, "delta")
            if delta is None:
                continue
            index = field(choice, "index") or 0
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = _Choice()
            content = field(delta, "content")
            if content:
                state.parts.append(content)
                carried = True
            refusal = field(delta, "refusal")
            if refusal:
                state.refusal.append(refusal)
                carried = True
            for call in field(delta, "tool_calls") or ():
                carried = _add_call(state, call) or carried
        return carried

    def answer(self) -> Answer:
        messages = [self._choices[index].message() for index in sorted(self._choices)]
        output = messages[0] if len(messages) == 1 else messages or None
        return Answer(output, usage_from_mapping(self._usage), self.model)


def _add_call(state: _Choice, call: Any) -> bool:
    index = field(call, "index") or 0
    entry = state.calls.get(index)
    if entry is None:
        entry = state.calls[index] = [None, "", []]
    if field(call, "id"):
        entry[0] = field(call, "id")
    function = field(call, "function")
    if function is None:
        return False
    if field(function, "name"):
        entry[1] = field(function, "name")
    arguments = field(function, "arguments")
    if arguments:
        entry[2].append(arguments)
    return True
