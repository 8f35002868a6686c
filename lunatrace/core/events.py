"""The wire event: the only module that knows Lunary's ingestion format.

Events are built in two steps so the caller's thread stays cheap:

1. On the hot path the caller's raw values are queued with the event's timestamp, as a
   record that builds the event's dict later, on the worker (:class:`StartRecord`,
   :class:`EndRecord`, :class:`StampedEvent`; an integration's :class:`HookRecord`
   holds a framework callback's arguments and the function that maps them): a tuple
   costs the application's thread a fraction of a dict, and the garbage collector
   less while it waits in the queue. The context's user, tags and metadata travel with
   a start.
2. :func:`wire_json` runs on the background worker. It first completes the event with
   that postponed work (:func:`complete`), then stamps the ISO timestamp, converts
   and caps every field (payloads, but also the name, tags and user id: any of them can
   be a user's huge value), scrubs secrets, flattens metadata to what the server keeps,
   and writes the JSON text the server receives.

Timestamps come from a monotonic clock anchored once to the wall clock, so they never go
backwards inside a process: the server sorts each batch by timestamp, and a clock step
backwards would put a child before its parent.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from json.encoder import encode_basestring  # C, no escaping of non-ASCII
from typing import Any, NamedTuple

from lunatrace._version import __version__
from lunatrace.core.serialize import MAX_ITEMS, Deferred, FieldEncoder, cut_text, dumps, to_jsonable
from lunatrace.core.timestamps import format_timestamp
from lunatrace.core.usage import estimate_usage

RUNTIME = f"lunatrace-py/{__version__}"

RUN_TYPES = frozenset(
    {"llm", "chain", "agent", "tool", "retriever", "embed", "chat", "thread", "custom-event"}
)
EVENT_NAMES = frozenset({"start", "end", "error", "feedback", "chat", "update", "custom-event"})
THUMBS = frozenset({"up", "down"})

# Fields that carry arbitrary user data and go through the field encoder.
_PAYLOAD_FIELDS = frozenset({"input", "output", "params", "error", "feedback", "message", "userProps"})
_MASKED_FIELDS = frozenset({"input", "output", "message"})
TIMESTAMP_KEY = "_ts_ms"
ESTIMATE_KEY = "_estimate"
CONTEXT_KEY = "_context"  # (context tags, context metadata) to merge under the run's own

logger = logging.getLogger("lunatrace")


class EventError(ValueError):
    """An event that the server would reject or silently ignore."""


class MonotonicClock:
    """Wall-clock milliseconds that never decrease within the process."""

    def __init__(self) -> None:
        self.anchor_ns = time.time_ns() - time.perf_counter_ns()
        self.last = 0
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        """A non-decreasing epoch time in milliseconds (thread-safe)."""
        with self._lock:
            return self.ms_at(time.perf_counter_ns())

    def ms_at(self, counter_ns: int) -> int:
        """The epoch milliseconds of ``counter_ns`` (a ``perf_counter_ns()`` reading), never
        below the last one returned. Not locked: for a caller that serialises every call
        under its own lock (the tracer's emit lock)."""
        now = (self.anchor_ns + counter_ns) // 1_000_000
        if now < self.last:
            now = self.last
        self.last = now
        return now

    def ms_after_last(self, counter_ns: int) -> int:
        """Like :meth:`ms_at`, but strictly after the last time returned (same locking)."""
        now = max((self.anchor_ns + counter_ns) // 1_000_000, self.last + 1)
        self.last = now
        return now


def new_run_id() -> str:
    return str(uuid.uuid4())


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def uuid_from_seed(seed: str) -> str:
    """The UUID the Lunary server makes of an id that is not 36 characters long.

    The server keeps a 36-character id as it is and replaces any other string by this
    digest (SHA-256 of its UTF-8 bytes, shaped as a UUID), so ``"msg-1"`` names the same
    run whoever sends it. lunatrace does the same before sending, so that the local
    store, the viewer and a later ``push`` all show the id the server keeps.
    """
    digest = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"


def run_id_str(value: Any) -> str:
    """The id the server stores for a run id: a UUID as its canonical string, any other
    non-empty string (a user's ``"conv-42"``) as :func:`uuid_from_seed` of it.

    Raises ``ValueError`` for an empty id, which names no run.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if type(value) is str and _CANONICAL_UUID.fullmatch(value):
        return value  # already canonical: the common case, checked first
    text = value if isinstance(value, str) else str(value)
    if not text:
        raise ValueError("an empty run id")
    lowered = text.lower()
    if len(text) == 36 and _CANONICAL_UUID.fullmatch(lowered):
        return lowered
    return uuid_from_seed(text)


def build(event: str, run_type: str, run_id: str, **fields: Any) -> dict[str, Any]:
    """Assemble a raw event on the hot path: camelCase keys, ``None`` fields dropped."""
    raw: dict[str, Any] = {"type": run_type, "event": event, "runId": run_id}
    for key, value in fields.items():
        if value is not None:
            raw[_CAMEL.get(key, key)] = value
    return raw


_CAMEL = {
    "parent_run_id": "parentRunId",
    "user_id": "userId",
    "user_props": "userProps",
    "tokens_usage": "tokensUsage",
    "thread_tags": "threadTags",
    "template_version_id": "templateVersionId",
}


def error_payload(exc: BaseException) -> dict[str, str]:
    """Message and full stack taken from the exception itself, not from ``sys.exc_info``.

    An exception whose ``__str__`` raises still gets its error event: losing it would
    leave the run 'started' forever.
    """
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001
        text = ""
    message = f"{name}: {text}" if text else name
    try:
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # noqa: BLE001
        stack = message
    return {"message": message, "stack": stack}


# Metadata keys the server reads as run fields once it has camel-cased them: a value of
# the wrong kind there fails the whole event (and LangChain copies metadata to every child).
_RUN_FIELD_KEYS = frozenset({"tags", "templateId", "templateVersionId"})
_CAMEL_STEP = re.compile(r"[-_][a-z]", re.IGNORECASE)
RESERVED_PREFIX = "metadata."


def server_camel(key: str) -> str:
    """A key as the server camel-cases it before reading it (``template_id`` -> ``templateId``)."""
    return _CAMEL_STEP.sub(lambda match: match.group()[1].upper(), key) if ("_" in key or "-" in key) else key


def flatten_metadata(metadata: Any, encoder: FieldEncoder) -> dict[str, Any]:
    """Keep metadata the way the server stores it: top-level scalars or lists of scalars.

    The server drops nested objects and nulls; rather than lose them, nested values are
    sent as JSON strings. Keys the server would read as run fields (``tags``,
    ``template_id``, ``templateVersionId``...) are renamed ``metadata.<key>``: the value
    stays visible on the run and can never make the server refuse it. (A template
    version the server does not have fails the event, and LangChain copies metadata to
    every child run: a link is sent only when given as ``template_version_id``.)
    """
    if not isinstance(metadata, Mapping):
        return {}
    data = encoder.encode(dict(metadata))
    if not isinstance(data, dict):
        return {"metadata": data} if data is not None else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        if server_camel(key) in _RUN_FIELD_KEYS:
            key = RESERVED_PREFIX + key
        if isinstance(value, str | int | float | bool) or (
            isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value)
        ):
            out[key] = value
        else:
            out[key] = dumps(value)
    return out


def _tokens(usage: Any) -> dict[str, int] | None:
    if not isinstance(usage, Mapping):
        return None
    out: dict[str, int] = {}
    for key in ("prompt", "completion", "promptCached"):
        value = usage.get(key)
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = int(value)
        except (TypeError, ValueError, OverflowError):
            continue
        if number >= 0:
            out[key] = number
    return out or None


def _text(value: Any) -> str:
    """``str(value)``, or the serializer's rendering when ``__str__`` itself fails."""
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a user object must not cost the event
        return dumps(to_jsonable(value))


def _shown(value: Any) -> str:
    """A refused value as an error message names it: short and scrubbed, since the message
    is logged (a 15 MB run type must not make a 15 MB log line)."""
    return repr(cut_text(_text(value), 80))


def _template_version(value: Any) -> int | None:
    """An integer template-version id, or ``None``: any other value (a number beyond the
    server's 64-bit ids among them) would fail the whole event."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if abs(value) < 2**63 else None
    if isinstance(value, str) and len(value) < 40 and value.strip().isdecimal():  # not "²": int() refuses it
        return _template_version(int(value))
    return None


def _tags_json(value: Any, encoder: FieldEncoder) -> str | None:
    """Tags as a JSON list of distinct strings, capped like any field (see
    :meth:`FieldEncoder.encode_strings`); ``None`` when there are none."""
    if not isinstance(value, list | tuple):
        return None
    texts = [_text(tag) for tag in itertools.islice(value, MAX_ITEMS) if tag is not None]
    tags = encoder.encode_strings(texts, len(texts) + max(0, len(value) - MAX_ITEMS))
    return dumps(tags) if tags else None


def _uuid_field(raw: Mapping[str, Any], key: str) -> str:
    try:
        return run_id_str(raw[key])
    except Exception:  # noqa: BLE001 - a user's id object whose __str__ fails
        raise EventError(f"{key} is not a run id: {_shown(raw.get(key))}") from None


class StartRecord(NamedTuple):
    """A run start as the tracer queues it, built into its raw dict on the worker.

    A tuple, not a dict: one is made for every run on the application's thread. It holds
    the start's arguments and a snapshot of the context (user, tags, metadata) taken there.
    """

    ts_ms: int
    run_type: str
    run_id: str
    parent: str | None
    name: str | None
    payload: Any
    user_id: Any
    user_props: Any
    params: Any
    tags: Any
    metadata: Any
    template_version_id: Any
    user: Any
    context_tags: tuple[str, ...]
    context_metadata: Mapping[str, Any]

    def build(self) -> dict[str, Any]:
        user_id, user_props, user = self.user_id, self.user_props, self.user
        if user_id is None and user is not None:
            user_id, user_props = user.user_id, user_props or user.props
        raw: dict[str, Any] = {  # ``None`` fields are dropped by ``wire_json``
            "type": self.run_type,
            "event": "start",
            "runId": self.run_id,
            "parentRunId": self.parent,
            "name": self.name,
            "input": self.payload,
            "params": self.params or None,
            "tags": tuple(self.tags) if self.tags else None,
            "metadata": self.metadata or None,
            "userId": None if user_id is None else str(user_id),
            "userProps": user_props if user_id is not None else None,
            "templateVersionId": self.template_version_id,
        }
        if self.context_tags or self.context_metadata:
            raw[CONTEXT_KEY] = (self.context_tags, self.context_metadata)
        return raw


class EndRecord(NamedTuple):
    """A run end as the tracer queues it, built into its raw dict on the worker.

    An llm run whose end reports no usage gets a token estimate from its model, its
    prompt (the end's input, else the start's) and its output.
    """

    ts_ms: int
    run_type: str
    run_id: str
    output: Any
    payload: Any
    usage: Any
    metadata: Any
    model: str | None
    prompt: Any

    def build(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "type": self.run_type,
            "event": "end",
            "runId": self.run_id,
            "output": self.output,
            "input": self.payload,
            "tokensUsage": self.usage or None,
            "metadata": self.metadata or None,
        }
        if self.run_type == "llm" and not self.usage:
            raw[ESTIMATE_KEY] = (self.model, self.payload or self.prompt, self.output)
        return raw


class StampedEvent(NamedTuple):
    """Any other event (error, feedback, thread message): its raw dict and timestamp."""

    ts_ms: int
    raw: dict[str, Any]

    def build(self) -> dict[str, Any]:
        return dict(self.raw)


class HookRecord(tuple):  # type: ignore[type-arg]
    """A framework callback as an integration queues it: ``(ts_ms, ns, builder, *args)``.

    ``builder(ts_ms, ns, *args)`` returns the raw event, or ``None`` when the callback
    makes none. Builders run on the worker in queue order, one at a time, so an
    integration can keep the state of its open runs there, off the application's
    thread. ``ns`` is the ``perf_counter_ns()`` reading behind ``ts_ms``, for durations.
    One flat tuple: every object that waits in the queue is work for the garbage collector
    on the application's thread.
    """

    __slots__ = ()

    @property
    def ts_ms(self) -> int:
        ts: int = self[0]
        return ts

    def build(self) -> dict[str, Any] | None:
        built: dict[str, Any] | None = self[2](self[0], self[1], *self[3:])
        return built


# What a sink receives: a queued record, or a raw dict carrying its own timestamp under
# ``TIMESTAMP_KEY`` (from callers that stamp events themselves).
RawEvent = dict[str, Any] | StartRecord | EndRecord | StampedEvent | HookRecord


def complete(raw: RawEvent) -> Mapping[str, Any] | None:
    """Do the work the hot path postponed; returns a new event, ``raw`` is left as is.

    A queued record (see :data:`RawEvent`) becomes its dict first (a ``HookRecord`` may
    make none: ``None``). Then the context's tags go before the run's own and its
    metadata under the run's.
    """
    if isinstance(raw, dict):
        done: dict[str, Any] = raw
    else:
        built = raw.build()
        if built is None:
            return None
        done = built
        done[TIMESTAMP_KEY] = raw.ts_ms
    context_fields = done.get(CONTEXT_KEY)
    if context_fields is None:
        return done
    if done is raw:
        done = dict(done)
    context_tags, context_metadata = context_fields
    tags, metadata = done.get("tags"), done.get("metadata")
    if context_tags:
        done["tags"] = list(dict.fromkeys([*context_tags, *(tags or ())]))
    if context_metadata:
        done["metadata"] = {**context_metadata, **metadata} if metadata else context_metadata
    return done


def to_wire(queued: RawEvent, encoder: FieldEncoder) -> dict[str, Any] | None:
    """The JSON object the server receives for a raw event (:func:`wire_json`, parsed)."""
    text = wire_json(queued, encoder)
    if text is None:
        return None
    wire: dict[str, Any] = json.loads(text)
    return wire


def wire_json(queued: RawEvent, encoder: FieldEncoder) -> str | None:
    """Turn a raw event into the exact JSON text the server accepts.

    The text is written directly, field by field, rather than built as a dict and
    encoded: the worker does this for every event, and each payload field comes out of
    the encoder as JSON already (:meth:`FieldEncoder.encode_json`).

    Raises :class:`EventError` for an event that would be refused or ignored; the worker
    logs and counts those instead of sending them. ``None``: the record makes no event.
    """
    raw = complete(queued)
    if raw is None:
        return None
    run_type = raw.get("type")
    name = raw.get("event")
    if run_type not in RUN_TYPES:
        raise EventError(f"unknown run type {_shown(run_type)}")
    if name not in EVENT_NAMES:
        raise EventError(f"unknown event name {_shown(name)}")
    # Type and event names are from fixed sets, ids canonical UUIDs: nothing to escape.
    parts = [f'{{"type":"{run_type}","event":"{name}","runId":"{_uuid_field(raw, "runId")}"']
    if raw.get("parentRunId") is not None:
        parts.append(f',"parentRunId":"{_uuid_field(raw, "parentRunId")}"')
    ts = raw.get(TIMESTAMP_KEY)
    parts.append(f',"timestamp":"{format_timestamp(int(ts) if ts is not None else int(time.time() * 1000))}"')
    metadata: dict[str, Any] | None = None
    tokens: dict[str, int] | None = None
    runtime = RUNTIME
    for key, value in raw.items():
        if value is None or key in _HEADER_FIELDS or key.startswith("_"):
            continue
        text: str | None = None
        if key in _PAYLOAD_FIELDS:
            if key == "feedback":
                text = _feedback_json(value, encoder)
            else:
                text = encoder.encode_json(value, masked=key in _MASKED_FIELDS)
        elif key == "metadata":
            metadata = flatten_metadata(value, encoder) or None
        elif key == "tokensUsage":
            tokens = _tokens(value)
        elif key in ("tags", "threadTags"):
            text = _tags_json(value, encoder)
        elif key in ("userId", "name"):
            text = encode_basestring(encoder.encode_text(_text(value)))
        elif key == "templateVersionId":
            template = _template_version(value)
            if template is not None:
                text = str(template)
        elif key == "runtime":
            runtime = encoder.encode_text(_text(value))
        else:
            text = encoder.encode_json(value, masked=False)
        if text is not None:
            parts.append(_field_prefix(key))
            parts.append(text)
    estimate = raw.get(ESTIMATE_KEY)
    if estimate and not tokens:
        model, prompt, completion = estimate
        tokens = estimate_usage(model, _counted(prompt), _counted(completion))
        metadata = {**(metadata or {}), "tokensEstimated": True}
    if tokens:
        parts.append(f',"tokensUsage":{dumps(tokens)}')
    if metadata:
        parts.append(f',"metadata":{dumps(metadata)}')
    parts.append(_RUNTIME_JSON if runtime is RUNTIME else f',"runtime":{encode_basestring(runtime)}}}')
    return "".join(parts)


_RUNTIME_JSON = f',"runtime":"{RUNTIME}"}}'
_HEADER_FIELDS = frozenset({"type", "event", "runId", "parentRunId", "timestamp"})
_FIELD_PREFIXES: dict[str, str] = {}


def _field_prefix(key: str) -> str:
    """``,"key":`` with the key escaped; the few keys events use are computed once."""
    prefix = _FIELD_PREFIXES.get(key)
    if prefix is None:
        prefix = f",{dumps(key)}:"
        if len(_FIELD_PREFIXES) < 256:
            _FIELD_PREFIXES[key] = prefix
    return prefix


def _feedback_json(value: Any, encoder: FieldEncoder) -> str | None:
    """A feedback field as JSON; raises :class:`EventError` for a thumb the server refuses."""
    feedback = encoder.encode(value, masked=False)
    if isinstance(feedback, Mapping) and feedback.get("thumb") not in (None, *THUMBS):
        raise EventError("feedback thumb must be 'up' or 'down'")
    return None if feedback is None else dumps(feedback)


def _counted(value: Any) -> Any:
    """What a token count reads: a ``Deferred``'s (kept) result, else the value itself
    (the counter reads strings, messages and lists of them, and ``str()`` of the rest)."""
    return value.resolve() if type(value) is Deferred else value


def validate(wire: Mapping[str, Any]) -> None:
    """Check an event against the protocol; raises :class:`EventError` on the first problem."""
    if wire.get("type") not in RUN_TYPES:
        raise EventError(f"unknown run type {wire.get('type')!r}")
    if wire.get("event") not in EVENT_NAMES:
        raise EventError(f"unknown event name {wire.get('event')!r}")
    for key in ("runId", "parentRunId"):
        if key in wire:
            try:
                uuid.UUID(str(wire[key]))
            except ValueError:
                raise EventError(f"{key} is not a UUID: {wire[key]!r}") from None
    if any(value is None for value in wire.values()):
        raise EventError("null fields overwrite stored values; they must be dropped")
    if "userId" in wire and not isinstance(wire["userId"], str):
        raise EventError("userId must be a string")
    feedback = wire.get("feedback")
    if isinstance(feedback, Mapping) and feedback.get("thumb") not in (None, *THUMBS):
        raise EventError("feedback thumb must be 'up' or 'down'")
    if "templateVersionId" in wire and not isinstance(wire["templateVersionId"], int):
        raise EventError("templateVersionId must be an integer")
    try:
        json.dumps(wire, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EventError(f"not valid JSON: {exc}") from None
