"""The message a Messages API stream has said so far, rebuilt from its raw events.

A streamed call's run needs what a plain call's ``Message`` gives at once: the model that
answered (``message_start``), each content block (``content_block_start``, then its
``text_delta``, ``input_json_delta`` or ``thinking_delta`` pieces), why it stopped and the
usage (``message_start``, then ``message_delta``, whose counts supersede the earlier
ones). :meth:`StreamedMessage.add` runs on the application's thread for every event, so it
only appends each piece to its block; joining them and the OpenAI translation wait for
the end (:meth:`StreamedMessage.answer`). A stream cut mid-way leaves what had arrived: a
tool call's arguments then stay the JSON text received, even if it does not parse.
"""

from __future__ import annotations

from typing import Any

from lunatrace.core.serialize import Deferred
from lunatrace.integrations.anthropic.mapping import assistant_message, usage_metadata, usage_of
from lunatrace.integrations.providers import Answer

_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
# The delta type of each content block type's pieces, and the attribute holding a piece.
_PIECES = {"text_delta": "text", "input_json_delta": "partial_json", "thinking_delta": "thinking"}
_STARTS = {"text": "text", "thinking": "thinking"}


class StreamedMessage:
    """Accumulates one stream's raw events (SDK objects, or dicts in the same shape)."""

    __slots__ = ("_blocks", "_content", "_usage", "model", "stop_reason")

    def __init__(self) -> None:
        self.model: str | None = None
        self.stop_reason: str | None = None
        self._blocks: dict[int, tuple[Any, list[str]]] = {}
        self._usage: dict[str, Any] = {}
        self._content = False

    def add(self, event: Any) -> bool:
        """Take one event; ``True`` when it is the first piece of content (the first token)."""
        kind = _get(event, "type")
        if kind == "content_block_delta":
            delta = _get(event, "delta")
            attribute = _PIECES.get(_get(delta, "type"))
            entry = self._blocks.get(_get(event, "index"))
            if attribute is None or entry is None:
                return False
            entry[1].append(str(_get(delta, attribute) or ""))
            first = not self._content
            self._content = True
            return first
        if kind == "content_block_start":
            self._blocks[_get(event, "index")] = (_get(event, "content_block"), [])
        elif kind == "message_start":
            message = _get(event, "message")
            model = _get(message, "model")
            self.model = str(model) if model else None
            self._take_usage(_get(message, "usage"))
        elif kind == "message_delta":
            self._take_usage(_get(event, "usage"))
            reason = _get(_get(event, "delta"), "stop_reason")
            if reason:
                self.stop_reason = str(reason)
        return False

    def _take_usage(self, usage: Any) -> None:
        for key in _USAGE_KEYS:
            value = _get(usage, key)
            if value is not None:
                self._usage[key] = value

    def answer(self) -> Answer:
        """The answer so far: the assistant message in OpenAI format, usage, model, metadata."""
        blocks = [self._block(start, pieces) for _, (start, pieces) in sorted(self._blocks.items())]
        usage = self._usage
        return Answer(
            Deferred(assistant_message, blocks),
            usage_of(usage) if usage else None,
            self.model,
            usage_metadata(usage, self.stop_reason) or None,
        )

    @staticmethod
    def _block(start: Any, pieces: list[str]) -> Any:
        kind = _get(start, "type")
        attribute = _STARTS.get(kind)
        if attribute is not None:
            return {"type": kind, attribute: str(_get(start, attribute) or "") + "".join(pieces)}
        if pieces:  # a tool call: its input is the JSON text the deltas spelled out
            return {
                "type": kind,
                "id": _get(start, "id"),
                "name": _get(start, "name"),
                "input": "".join(pieces),
            }
        return start


def _get(value: Any, key: str) -> Any:
    """An event's field, read the cheap way: events are SDK objects (a dict in tests' own
    replays), and this runs for every event of every stream."""
    if type(value) is dict:
        return value.get(key)
    return getattr(value, key, None)
