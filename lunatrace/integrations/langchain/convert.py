"""LangChain objects -> lunatrace payloads (messages, generations, documents).

Converting messages and documents costs tens of microseconds per call, so the handler
does not do it on the application's thread: it wraps the raw objects in the core's
:class:`~lunatrace.core.serialize.Deferred`, which the serializer resolves on the
background worker. The result is the same as an eager conversion: OpenAI-format
messages and flat document dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lunatrace.core.messages import to_openai_message, to_openai_messages

# The last messages converted, by identity, and their conversions. In a chain one step's
# output is the next step's input (a prompt's messages are the model's, the model's
# answer is the parser's), so a message is mostly converted twice in a row, and a
# conversation's history four times per call, again at every turn. Enough entries for a
# long history; bounded, as the entries keep their messages alive.
_RECENT: dict[int, tuple[Any, dict[str, Any]]] = {}
RECENT_MESSAGES = 256


def message_to_openai(message: Any) -> dict[str, Any]:
    """One LangChain ``BaseMessage`` (or chunk) as an OpenAI chat message.

    Covers every role (``ChatMessage`` keeps its own), multimodal content parts, AI
    ``tool_calls`` with JSON-string arguments, ``tool_call_id`` and ``name``. The result
    may be shared with an earlier conversion of the same message: never modify it.
    """
    key = id(message)
    entry = _RECENT.get(key)
    if entry is not None and entry[0] is message:
        return entry[1]
    converted = _message_to_openai(message)
    if len(_RECENT) >= RECENT_MESSAGES:
        _RECENT.pop(next(iter(_RECENT)), None)
    _RECENT[key] = (message, converted)
    return converted


def _message_to_openai(message: Any) -> dict[str, Any]:
    if not _is_object(message):
        if isinstance(message, str | Mapping):
            return to_openai_message(message)
        if len(message) == 2 and isinstance(message[0], str):
            return to_openai_message({"role": message[0], "content": message[1]})  # ("human", "hi") tuples
    # Message fields live in the pydantic instance dict; reading it directly avoids
    # pydantic's slow ``__getattr__`` for the fields a message class does not have.
    fields = getattr(message, "__dict__", None)
    if not (type(fields) is dict or isinstance(fields, Mapping)) or not isinstance(fields.get("type"), str):
        return to_openai_message(message)
    return to_openai_message(fields)


# Classes of messages that are neither strings, mappings nor sequences (message objects),
# by class: the answer depends on the class alone, and two ABC checks per message cost
# more than the rest of looking at it. Bounded; a class past the bound is checked each time.
_OBJECT_CLASSES: dict[type, bool] = {}
MAX_CLASSES = 256


def _is_object(message: Any) -> bool:
    cls = type(message)
    known = _OBJECT_CLASSES.get(cls)
    if known is None:
        known = not isinstance(message, str | Mapping | Sequence)
        if len(_OBJECT_CLASSES) < MAX_CLASSES:
            _OBJECT_CLASSES[cls] = known
    return known


def messages_to_openai(messages: Any) -> list[dict[str, Any]]:
    """A list of LangChain messages as OpenAI chat messages."""
    return to_openai_messages(messages, message_to_openai)


def prompt_batches_to_openai(batches: Sequence[Any]) -> Any:
    """``on_chat_model_start``'s ``list[list[BaseMessage]]``: one list, or one per prompt."""
    if len(batches) == 1:
        return messages_to_openai(batches[0])
    return [messages_to_openai(batch) for batch in batches]


def is_message(value: Any) -> bool:
    """A LangChain message, or its ``("human", "hi")`` shorthand."""
    if isinstance(value, tuple):  # ("human", "hi"), LangChain's message shorthand
        return len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], str)
    return _has_content(value) and isinstance(getattr(value, "type", None), str)


# Pydantic model classes whose instances can hold a ``content`` attribute only in their
# ``__dict__`` (no such field, class attribute or allowed extra), by class: asking such an
# instance (a prompt value, a graph's state) for it runs pydantic's ``__getattr__`` to
# its error, which costs more than converting a message.
_CONTENTLESS: dict[type, bool] = {}


def _has_content(value: Any) -> bool:
    cls = type(value)
    contentless = _CONTENTLESS.get(cls)
    if contentless is None:
        fields, config = getattr(cls, "__pydantic_fields__", None), getattr(cls, "model_config", None)
        contentless = (
            isinstance(fields, dict)
            and "content" not in fields
            and isinstance(config, dict)
            and config.get("extra") != "allow"
            and not hasattr(cls, "content")
        )
        if len(_CONTENTLESS) < MAX_CLASSES:
            _CONTENTLESS[cls] = contentless
    if contentless:
        return "content" in (getattr(value, "__dict__", None) or ())
    return hasattr(value, "content")


def _is_command(value: Any) -> bool:
    """A LangGraph ``Command``: what create_agent's nodes return, and the input that
    resumes an interrupted graph (``Command(resume=...)``)."""
    return type(value).__name__ == "Command" and hasattr(value, "update")


_COMMAND_FIELDS = ("resume", "update", "goto")


def is_resume(value: Any) -> bool:
    """A ``Command(resume=...)``: the input that continues a graph paused on ``interrupt()``."""
    return _is_command(value) and getattr(value, "resume", None) is not None


def chain_payload(value: Any, depth: int = 0) -> Any:
    """A chain's input or output with LangChain messages (also inside graph state and
    prompt values) in OpenAI format; everything else left to the core serializer."""
    if is_message(value):
        return message_to_openai(value)
    if _is_command(value):
        command = {key: getattr(value, key, None) for key in _COMMAND_FIELDS}
        return {k: chain_payload(v, depth + 1) for k, v in command.items() if not _unset(v)}
    to_messages = getattr(value, "to_messages", None)
    if callable(to_messages) and not (type(value) is dict or isinstance(value, Mapping)):
        return messages_to_openai(to_messages())  # ChatPromptValue
    if depth < 6:
        if isinstance(value, dict):
            return {k: chain_payload(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple) and any(is_message(v) or _is_command(v) for v in value[:50]):
            return [chain_payload(v, depth + 1) for v in value]
    return value


def _unset(value: Any) -> bool:
    """A ``Command`` field left at its default (``None``, or an empty ``goto``)."""
    return value is None or (type(value) in (tuple, list) and not value)


def _generation_to_openai(generation: Any) -> dict[str, Any]:
    message = getattr(generation, "message", None)
    if message is not None:
        out = message_to_openai(message)
        return out if out.get("role") == "assistant" else {**out, "role": "assistant"}
    return {"role": "assistant", "content": getattr(generation, "text", "")}


def generations_to_openai(generations: Sequence[Sequence[Any]]) -> Any:
    """The assistant message of a call, or every generation when there are several (n > 1)."""
    flat = [g for batch in generations for g in batch]
    if len(flat) == 1:
        return _generation_to_openai(flat[0])
    return [_generation_to_openai(g) for g in flat]


def document_to_dict(document: Any) -> dict[str, Any]:
    """A retrieved ``Document`` as ``{id?, title?, source?, content, metadata, score?}``."""
    metadata = getattr(document, "metadata", None) or {}
    out: dict[str, Any] = {}
    doc_id = getattr(document, "id", None)
    if doc_id:
        out["id"] = str(doc_id)
    for key in ("title", "source"):
        if metadata.get(key):
            out[key] = metadata[key]
    out["content"] = getattr(document, "page_content", None)
    if out["content"] is None:
        out["content"] = str(document)
    out["metadata"] = dict(metadata)
    for key in ("score", "relevance_score", "similarity_score", "_score"):
        score = metadata.get(key)
        if isinstance(score, int | float) and not isinstance(score, bool):
            out["score"] = score
            break
    return out


def documents_to_dicts(documents: Any) -> list[dict[str, Any]]:
    if not isinstance(documents, Sequence):
        return [document_to_dict(documents)]
    return [document_to_dict(d) for d in documents]
