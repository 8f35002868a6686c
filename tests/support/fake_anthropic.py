"""What a fake Anthropic Messages API answers: the JSON of a ``Message``, the SSE events of
a streamed one, and Anthropic's error bodies.

The shapes follow the Messages API as the ``anthropic`` client parses them: a ``Message``
(``id``, ``model``, ``content`` blocks, ``stop_reason``, ``usage`` with the cache counts);
a stream of ``message_start`` (the message with no content and the input usage),
``content_block_start`` / ``content_block_delta`` (``text_delta``, ``input_json_delta``,
``thinking_delta``, ``signature_delta``) / ``content_block_stop`` per block, a ``ping``,
``message_delta`` (stop reason, final output count) and ``message_stop``; an ``error``
event in a stream, and ``{"type": "error", "error": {"type", "message"}}`` bodies for
error statuses. An :class:`Answer` is one scripted reply, given whole (``message()``) or
as events (``events()``), optionally cut after a number of events or ended by an error.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic

from tests.support.fake_provider import FakeProvider, Json, Recorded, Reply, Sse, serve

MESSAGES_PATH = "/v1/messages"
MODEL = "claude-sonnet-4-5-20250929"
REQUEST_MODEL = "claude-sonnet-4-5"
# Anthropic's error types by status, as its API documentation lists them.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, arguments: dict[str, Any], call_id: str = "toolu_01") -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def thinking(value: str, signature: str = "c2lnbmF0dXJl") -> dict[str, Any]:
    return {"type": "thinking", "thinking": value, "signature": signature}


def error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error JSON for ``status``."""
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def usage(
    input_tokens: int = 12, output_tokens: int = 7, cache_read: int = 0, cache_creation: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
    }


def _pieces(value: str, size: int) -> list[str]:
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


@dataclass
class Answer:
    """One scripted reply of the fake Messages API."""

    content: Sequence[dict[str, Any]] = (text("Hello there!"),)
    model: str = MODEL
    stop_reason: str = "end_turn"
    usage: dict[str, Any] = field(default_factory=usage)
    message_id: str = "msg_01"
    chunk: int = 4  # characters per delta

    def message(self) -> dict[str, Any]:
        """The ``Message`` JSON of a call made without ``stream``."""
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [dict(block) for block in self.content],
            "stop_reason": self.stop_reason,
            "stop_sequence": None,
            "usage": dict(self.usage),
        }

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """The SSE events of the same reply, streamed: ``(event name, data)`` pairs."""
        start = {
            **self.message(),
            "content": [],
            "stop_reason": None,
            "usage": {**self.usage, "output_tokens": 1},
        }
        out: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            ("ping", {"type": "ping"}),
        ]
        for index, block in enumerate(self.content):
            out.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": _empty(block)},
                )
            )
            out.extend(
                ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                for delta in self._deltas(block)
            )
            out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": self.usage["output_tokens"]},
                },
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _deltas(self, block: dict[str, Any]) -> list[dict[str, Any]]:
        kind = block["type"]
        if kind == "text":
            return [{"type": "text_delta", "text": piece} for piece in _pieces(block["text"], self.chunk)]
        if kind == "tool_use":
            arguments = json.dumps(block["input"])
            return [{"type": "input_json_delta", "partial_json": p} for p in _pieces(arguments, self.chunk)]
        if kind == "thinking":
            pieces = [
                {"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"], self.chunk)
            ]
            return [*pieces, {"type": "signature_delta", "signature": block["signature"]}]
        return []


def _empty(block: dict[str, Any]) -> dict[str, Any]:
    """A block as its ``content_block_start`` announces it, before any delta."""
    kind = block["type"]
    if kind == "text":
        return {"type": "text", "text": ""}
    if kind == "tool_use":
        return {**block, "input": {}}
    if kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    return dict(block)


def error_event(status: int, message: str) -> tuple[str, dict[str, Any]]:
    """The ``error`` event a stream ends with when the API fails mid-way (``overloaded_error``...)."""
    return ("error", error_body(status, message))


def status_error(status: int, message: str, headers: dict[str, str] | None = None) -> Json:
    """An error status with Anthropic's error body (and its ``request-id`` header)."""
    return Json(
        error_body(status, message), status=status, headers={"request-id": "req_err", **(headers or {})}
    )


def stream_of(
    answer: Answer, *, cut_after: int | None = None, error_after: int | None = None, item_delay_s: float = 0.0
) -> Sse:
    """``answer`` streamed; ``cut_after``: the connection drops after that many events;
    ``error_after``: an ``overloaded_error`` event comes after that many, and nothing more."""
    events = answer.events()
    if error_after is not None:
        events = [*events[:error_after], error_event(529, "Overloaded")]
    return Sse(events, cut_after=cut_after, item_delay_s=item_delay_s)


class FakeAnthropic:
    """The Messages API on a :class:`FakeProvider`: scripted answers, recorded requests."""

    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider
        self.answers: deque[Answer] = deque()
        self.default = Answer()
        self.delay_s = 0.0  # before each answer: a call the server takes for a real one (10 ms or more)
        provider.route("POST", MESSAGES_PATH, self._reply)

    @property
    def url(self) -> str:
        return self.provider.url

    def client(self, **options: Any) -> anthropic.Anthropic:
        """A real client pointed at this server (no retries unless asked)."""
        return anthropic.Anthropic(**self._options(options))

    def async_client(self, **options: Any) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(**self._options(options))

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"api_key": "sk-ant-test", "base_url": self.url, "max_retries": 0, **options}

    def also_at(self, path: str) -> None:
        """Answer the Messages API at ``path`` too (Vertex puts the model in the path)."""
        self.provider.route("POST", path, self._reply)

    def script(self, *answers: Answer) -> None:
        """Answer the next requests with ``answers``, in order."""
        self.answers.extend(answers)

    def fault(self, *replies: Reply) -> None:
        """Serve ``replies`` (errors, cut streams) to the next requests, before any answer."""
        self.provider.queue(MESSAGES_PATH, *replies)

    def bodies(self) -> list[Any]:
        """The JSON bodies the client sent, oldest first."""
        return self.provider.bodies(MESSAGES_PATH)

    def _reply(self, request: Recorded) -> Reply:
        answer = self.answers.popleft() if self.answers else self.default
        body = request.body if isinstance(request.body, dict) else {}
        if body.get("stream"):
            return Sse(answer.events(), delay_s=self.delay_s)
        return Json(answer.message(), headers={"request-id": "req_01"}, delay_s=self.delay_s)


def running() -> Iterator[FakeAnthropic]:
    """A fake Anthropic API on 127.0.0.1, for a fixture's body (``yield from running()``)."""
    holder: list[FakeAnthropic] = []
    for _provider in serve(lambda p: holder.append(FakeAnthropic(p))):
        yield holder[0]
