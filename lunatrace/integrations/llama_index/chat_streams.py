"""Ending chat-engine runs whose answer streams (``stream_chat`` / ``astream_chat``).

A streaming chat engine returns a ``StreamingAgentChatResponse`` at once. Usually it
also starts a thread (or task) running ``write_response_to_history``, which reads the
LLM stream into a queue that ``response_gen`` drains. That thread can start reading
before the chat span has even exited, so the stream cannot be wrapped after the fact;
instead the chat run is ended by the end of the ``write_response_to_history`` span of
the same response object, whichever of the two finishes first. A response built with
``is_writing_to_memory=False`` (some engines, early 0.14 releases) is read directly by
the application: its ``chat_stream`` / ``achat_stream`` is relayed like a query stream.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from lunatrace.integrations.llama_index._common import StreamWatch

WRITER_CLASS = "StreamingAgentChatResponse"
WRITER_METHODS = frozenset({"write_response_to_history", "awrite_response_to_history"})
_FINISHED_KEPT = 256

# (run, final text or None when abandoned, exception or None, abandoned)
ChatEnd = Callable[[Any, "str | None", "BaseException | None", bool], None]


def unwritten_stream_field(result: Any) -> str | None:
    """The stream field the application reads itself (no history writer), if any."""
    fields = vars(result)
    if fields.get("is_writing_to_memory", True) is not False:
        return None
    return "achat_stream" if fields.get("achat_stream") is not None else "chat_stream"


def is_streaming_chat_response(result: Any) -> bool:
    """A ``StreamingAgentChatResponse`` that still has a stream to read."""
    try:
        fields = vars(result)
    except TypeError:  # no __dict__
        return False
    return type(result).__name__ == WRITER_CLASS and (
        fields.get("chat_stream") is not None or fields.get("achat_stream") is not None
    )


class ChatStreams:
    """Pairs a chat run with the end of its response's history writer."""

    def __init__(self, watch: StreamWatch, on_end: ChatEnd) -> None:
        self._watch = watch
        self._on_end = on_end
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[Any, Any, int]] = {}  # id(response) -> (run, response, watch key)
        # Writers that ended before their chat run's span exited; the response is kept so
        # that its id cannot be reused meanwhile.
        self._finished: OrderedDict[int, tuple[Any, BaseException | None]] = OrderedDict()

    def defer(self, run: Any, response: Any, timeout_s: float) -> None:
        """Called when the chat span exits with a streaming response."""
        key = id(response)
        with self._lock:
            finished = self._finished.pop(key, None)
            if finished is None:
                watch_key = self._watch.watch(timeout_s, lambda: self._abandon(key))
                self._waiting[key] = (run, response, watch_key)
                return
        self._on_end(run, _text(response), finished[1], False)

    def writer_done(self, response: Any, err: BaseException | None) -> None:
        """Called when ``write_response_to_history`` of ``response`` exits or fails."""
        key = id(response)
        with self._lock:
            waiting = self._waiting.pop(key, None)
            if waiting is None:
                self._finished[key] = (response, err)
                while len(self._finished) > _FINISHED_KEPT:
                    self._finished.popitem(last=False)
                return
        self._watch.cancel(waiting[2])
        self._on_end(waiting[0], _text(response), err, False)

    def _abandon(self, key: int) -> None:
        with self._lock:
            waiting = self._waiting.pop(key, None)
        if waiting is not None:
            self._on_end(waiting[0], None, None, True)


def _text(response: Any) -> str | None:
    text = vars(response).get("response")
    return text if isinstance(text, str) else None
