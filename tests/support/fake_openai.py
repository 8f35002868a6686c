"""The OpenAI API on the fake provider server: Chat Completions, Responses, Embeddings.

Replies are shaped as the OpenAI API shapes them, in JSON and in server-sent events
(``data: {chunk}`` ... ``data: [DONE]`` for Chat Completions; ``event: response.*``
blocks for the Responses API), and say what :class:`Script` says: the text, the tool
calls, a reasoning summary, the usage, the model that answers. A streamed Chat
Completions answer carries usage in a last chunk only when the request asks for it
(``stream_options={"include_usage": True}``), as OpenAI does. Errors come with
OpenAI's error body (:func:`error`).

Imports only the standard library and pytest: it runs with the oldest supported client.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_provider import FakeProvider, Json, Recorded, Reply, Sse

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
EMBEDDINGS = "/v1/embeddings"
ANSWERING_MODEL = "gpt-4o-mini-2024-07-18"
EMBEDDING_MODEL = "text-embedding-3-small"
API_KEY = "sk-test-0123456789abcdefghijklmnop"


@dataclass
class Script:
    """What the fake model answers (the same to every request until changed)."""

    text: str = "Paris is the capital of France."
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, JSON arguments)
    reasoning: str | None = None  # a Responses API reasoning summary
    model: str = ANSWERING_MODEL
    usage: tuple[int, int, int] = (12, 7, 4)  # prompt, completion, cached prompt tokens
    item_delay_s: float = 0.0  # between streamed items
    delay_s: float = 0.0  # before each answer (Lunary prices no call under 10 ms)


def error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> Json:
    """An error reply with OpenAI's error body."""
    return Json({"error": {"message": message, "type": kind, "param": None, "code": code}}, status=status)


def _pieces(text: str) -> list[str]:
    """``text`` in streamed pieces: word by word, spaces kept."""
    words = text.split(" ")
    return [word + (" " if index < len(words) - 1 else "") for index, word in enumerate(words)]


class FakeOpenAI:
    """The routes and their script, on a :class:`FakeProvider`."""

    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider
        self.script = Script()
        provider.route("POST", CHAT, self._chat)
        provider.route("POST", RESPONSES, self._responses)
        provider.route("POST", EMBEDDINGS, self._embeddings)

    @property
    def base_url(self) -> str:
        return f"{self.provider.url}/v1"

    def client_options(self) -> dict[str, Any]:
        """What a client needs to talk to this server (no retries: one request per call)."""
        return {"base_url": self.base_url, "api_key": API_KEY, "max_retries": 0}

    def azure_options(self, deployment: str) -> dict[str, Any]:
        """What an Azure client needs to reach ``deployment`` on this server (its Chat
        Completions path, ``/openai/deployments/<deployment>/chat/completions``)."""
        self.provider.route("POST", f"/openai/deployments/{deployment}/chat/completions", self._chat)
        return {"azure_endpoint": self.provider.url, "api_version": "2024-10-21", "api_key": API_KEY} | {
            "max_retries": 0
        }

    def queue(self, path: str, *replies: Reply) -> None:
        self.provider.queue(path, *replies)

    def last_body(self, path: str) -> Any:
        return self.provider.bodies(path)[-1]

    # --- Chat Completions -----------------------------------------------------------

    def _usage(self) -> dict[str, Any]:
        prompt, completion, cached = self.script.usage
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    def _text(self, index: int) -> str:
        return self.script.text if index == 0 else f"{self.script.text} (answer {index + 1})"

    def _calls(self) -> list[dict[str, Any]]:
        return [
            {"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": arguments}}
            for n, (name, arguments) in enumerate(self.script.tool_calls)
        ]

    def reply(self, path: str, body: dict[str, Any]) -> Reply:
        """What the route of ``path`` answers to a request ``body`` (for a test that queues
        it with a delay or a cut)."""
        route = {CHAT: self._chat, RESPONSES: self._responses, EMBEDDINGS: self._embeddings}[path]
        return route(Recorded("POST", path, {}, body))

    def _chat(self, request: Recorded) -> Reply:
        body = request.body or {}
        choices = int(body.get("n") or 1)
        if body.get("stream"):
            return self._chat_stream(body, choices)
        calls = self._calls()
        return Json(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": self.script.model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": index,
                        "message": {
                            "role": "assistant",
                            "content": None if calls else self._text(index),
                            "refusal": None,
                            **({"tool_calls": calls} if calls else {}),
                        },
                        "finish_reason": "tool_calls" if calls else "stop",
                        "logprobs": None,
                    }
                    for index in range(choices)
                ],
                "usage": self._usage(),
            },
            delay_s=self.script.delay_s,
        )

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> tuple[None, dict[str, Any]]:
        return None, {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": self.script.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
            "usage": usage,
        }

    def _chat_stream(self, body: dict[str, Any], choices: int) -> Sse:
        items = []
        for index in range(choices):
            delta = {"role": "assistant", "content": ""}
            items.append(self._chunk([{"index": index, "delta": delta, "finish_reason": None}]))
            if not self.script.tool_calls:
                for piece in _pieces(self._text(index)):
                    items.append(
                        self._chunk([{"index": index, "delta": {"content": piece}, "finish_reason": None}])
                    )
            for n, (name, arguments) in enumerate(self.script.tool_calls):
                start = {
                    "index": n,
                    "id": f"call_{n}",
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                items.append(
                    self._chunk([{"index": index, "delta": {"tool_calls": [start]}, "finish_reason": None}])
                )
                half = len(arguments) // 2
                for piece in (arguments[:half], arguments[half:]):
                    more = {"index": n, "function": {"arguments": piece}}
                    items.append(
                        self._chunk(
                            [{"index": index, "delta": {"tool_calls": [more]}, "finish_reason": None}]
                        )
                    )
            finish = "tool_calls" if self.script.tool_calls else "stop"
            items.append(self._chunk([{"index": index, "delta": {}, "finish_reason": finish}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            items.append(self._chunk([], self._usage()))
        return Sse(
            [*items, (None, "[DONE]")], delay_s=self.script.delay_s, item_delay_s=self.script.item_delay_s
        )

    # --- Responses --------------------------------------------------------------------

    def _output(self) -> list[dict[str, Any]]:
        output: list[dict[str, Any]] = []
        if self.script.reasoning:
            summary = [{"type": "summary_text", "text": self.script.reasoning}]
            output.append({"type": "reasoning", "id": "rs_fake", "summary": summary})
        for n, (name, arguments) in enumerate(self.script.tool_calls):
            call = {"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": name}
            output.append({**call, "arguments": arguments, "status": "completed"})
        if not self.script.tool_calls:
            text = {"type": "output_text", "text": self.script.text, "annotations": []}
            output.append(
                {
                    "type": "message",
                    "id": "msg_fake",
                    "status": "completed",
                    "role": "assistant",
                    "content": [text],
                }
            )
        return output

    def _response(self, body: dict[str, Any], status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        prompt, completion, cached = self.script.usage
        return {
            "id": "resp_fake",
            "object": "response",
            "created_at": 1_700_000_000,
            "status": status,
            "model": self.script.model,
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "text": body.get("text", {"format": {"type": "text"}}),
            "usage": None
            if status == "in_progress"
            else {
                "input_tokens": prompt,
                "output_tokens": completion,
                "total_tokens": prompt + completion,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }

    def _responses(self, request: Recorded) -> Reply:
        body = request.body or {}
        output = self._output()
        if not body.get("stream"):
            return Json(self._response(body, "completed", output), delay_s=self.script.delay_s)
        events: list[tuple[str | None, Any]] = []

        def event(kind: str, **data: Any) -> None:
            events.append((kind, {"type": kind, "sequence_number": len(events), **data}))

        event("response.created", response=self._response(body, "in_progress", []))
        for index, item in enumerate(output):
            event("response.output_item.added", output_index=index, item={**item, "status": "in_progress"})
            if item["type"] == "message":
                for piece in _pieces(self.script.text):
                    event(
                        "response.output_text.delta",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        delta=piece,
                    )
            elif item["type"] == "function_call":
                event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=index,
                    delta=item["arguments"],
                )
            event("response.output_item.done", output_index=index, item=item)
        event("response.completed", response=self._response(body, "completed", output))
        return Sse(events, delay_s=self.script.delay_s, item_delay_s=self.script.item_delay_s)

    # --- Embeddings -------------------------------------------------------------------

    def _embeddings(self, request: Recorded) -> Reply:
        body = request.body or {}
        texts = body.get("input")
        texts = texts if isinstance(texts, list) else [texts]
        data = []
        for index, _ in enumerate(texts):
            vector = [round(0.125 * (index + 1) * (d + 1), 3) for d in range(8)]
            encoded: Any = vector
            if body.get("encoding_format") == "base64":  # what the client asks for by default
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(str(text).split()) for text in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        answer = {"object": "list", "data": data, "model": EMBEDDING_MODEL, "usage": usage}
        return Json(answer, delay_s=self.script.delay_s)


@contextmanager
def running() -> Iterator[FakeOpenAI]:
    """A fake OpenAI server for the body of the ``with``."""
    provider = FakeProvider().start()
    try:
        yield FakeOpenAI(provider)
    finally:
        provider.stop()
