"""The wire event: the only module that knows Lunary's ingestion format.

Every event dict is made here (:func:`start_event`, :func:`end_event`,
:func:`error_event`, :func:`build`): integrations pass plain values, never wire keys.
Events are built in two steps so the caller's thread stays cheap:

1. On the hot path the caller's raw values are queued with the event's timestamp, as a
   record that builds the event's dict later, on the worker (:class:`StartRecord`,
   :class:`EndRecord`, :class:`StampedEvent`; an integration's named record of a
   framework callback, a :class:`FrameworkHook`, in a :class:`HookRecord`): a tuple
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

import functools
import hashlib
import itertools
import json
import logging
import re
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from lunatrace._version import __version__
from lunatrace.core.guard import failed
from lunatrace.core.json_text import converted_json
from lunatrace.core.serialize import MAX_ITEMS, Deferred, FieldEncoder, cut_text, dumps, to_jsonable
from lunatrace.core.timestamps import format_timestamp
from lunatrace.core.usage import estimate_usage

if TYPE_CHECKING:
    from lunatrace.core.context import User
    from lunatrace.core.runs import RunRegistry

RUNTIME = f"lunatrace-py/{__version__}"

RUN_TYPES = frozenset(
    {"llm", "chain", "agent", "tool", "retriever", "embed", "chat", "thread", "custom-event"}
)
EVENT_NAMES = frozenset({"start", "end", "error", "feedback", "chat", "update", "custom-event"})
THUMBS = frozenset({"up", "down"})

TIMESTAMP_KEY = "_ts_ms"
_ESTIMATE_KEY = "_estimate"  # (model, prompt, output) for a token estimate
_CONTEXT_KEY = "_context"  # (context tags, context metadata) to merge under the run's own

logger = logging.getLogger("lunatrace")


class EventError(ValueError):
    """An event that the server would reject or silently ignore."""


class MonotonicClock:
    """Wall-clock milliseconds that never decrease within the process.

    Anchored once to the wall clock (``anchor_ns``: wall time minus the counter), then
    driven by ``perf_counter_ns()`` readings, so a wall-clock step backwards cannot put a
    child before its parent. Not locked: its caller (the tracer) serialises every call
    under the lock that also orders the queue.
    """

    def __init__(self, anchor_ns: int | None = None) -> None:
        self.anchor_ns = time.time_ns() - time.perf_counter_ns() if anchor_ns is None else anchor_ns
        self.last = 0

    def ms_at(self, counter_ns: int) -> int:
        """The epoch milliseconds of ``counter_ns`` (a ``perf_counter_ns()`` reading), never
        below the last one returned: a reading taken before another thread's, but stamped
        after it, gets that thread's time rather than going back."""
        now = (self.anchor_ns + counter_ns) // 1_000_000
        if now < self.last:
            now = self.last
        self.last = now
        return now

    def ms_after_last(self, counter_ns: int) -> int:
        """Like :meth:`ms_at`, but strictly after the last time returned."""
        now = max((self.anchor_ns + counter_ns) // 1_000_000, self.last + 1)
        self.last = now
        return now


def new_run_id() -> str:
    return str(uuid.uuid4())


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_is_canonical = _CANONICAL_UUID.fullmatch


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
    except Exception:  # noqa: BLE001 - the application's __str__ may raise anything: the name alone
        text = ""
    message = f"{name}: {text}" if text else name
    try:
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # noqa: BLE001 - formatting runs the application's code (a chained __str__)
        stack = message
    return {"message": message, "stack": stack}


# Metadata keys the server reads as run fields once it has camel-cased them: a value of
# the wrong kind there fails the whole event (and LangChain copies metadata to every child).
_RUN_FIELD_KEYS = frozenset({"tags", "templateId", "templateVersionId"})
_CAMEL_STEP = re.compile(r"[-_][a-z]", re.IGNORECASE)
RESERVED_PREFIX = "metadata."


@functools.lru_cache(maxsize=1024)
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
    if type(metadata) is dict and encoder.keeps_flat(metadata):
        data: Any = metadata  # what the conversion would make of it: itself
    elif isinstance(metadata, Mapping):
        data = encoder.encode(dict(metadata))
    else:
        return {}
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
    if usage is None or not (type(usage) is dict or isinstance(usage, Mapping)):
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


# Run ids lately found canonical: a run's id is written with its start, its end and as
# each child's parent, and the pattern's match costs more than the rest of the header.
# Bounded; emptied when full (a new dict: the exit's keeper may be reading the old one).
_CANONICAL_SEEN: dict[str, None] = {}
CANONICAL_SEEN = 4_096


def _uuid_field(raw: Mapping[str, Any], key: str) -> str:
    global _CANONICAL_SEEN
    value = raw[key]
    if type(value) is str:
        if value in _CANONICAL_SEEN:
            return value
        if _is_canonical(value):  # the common case, without run_id_str's calls
            if len(_CANONICAL_SEEN) >= CANONICAL_SEEN:
                _CANONICAL_SEEN = {}
            _CANONICAL_SEEN[value] = None
            return value
    try:
        return run_id_str(value)
    except Exception:  # noqa: BLE001 - a user's id object whose __str__ fails
        raise EventError(f"{key} is not a run id: {_shown(raw.get(key))}") from None


def start_event(
    run_type: str,
    run_id: str,
    *,
    parent: str | None,
    name: str | None,
    input: Any,  # noqa: A002 - the wire field's name
    params: Any = None,
    tags: Any = None,
    metadata: Any = None,
    user_id: Any = None,
    user_props: Any = None,
    template_version_id: Any = None,
    user: User | None = None,
    context_tags: tuple[str, ...] = (),
    context_metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A run's start event, from plain values: ``None`` fields are dropped by :func:`wire_json`.

    ``user`` (the context's, from ``identify``) applies when no ``user_id`` is given. The
    context's tags go before the run's own and its metadata under the run's (merged by
    :func:`complete`, on the worker).
    """
    if user_id is None and user is not None:
        user_id, user_props = user.user_id, user_props or user.props
    raw: dict[str, Any] = {
        "type": run_type,
        "event": "start",
        "runId": run_id,
        "parentRunId": parent,
        "name": name,
        "input": input,
        "params": params or None,
        "tags": tags or None,
        "metadata": metadata or None,
        "userId": None if user_id is None else str(user_id),
        "userProps": user_props if user_id is not None else None,
        "templateVersionId": template_version_id,
    }
    if context_tags or context_metadata:
        raw[_CONTEXT_KEY] = (context_tags, context_metadata)
    return raw


def end_event(
    run_type: str,
    run_id: str,
    *,
    output: Any,
    input: Any = None,  # noqa: A002 - inputs known only at the end (streaming)
    usage: Any = None,
    metadata: Any = None,
    model: str | None = None,
    prompt: Any = None,
) -> dict[str, Any]:
    """A run's end event. An llm run that reports no usage gets a token estimate (on the
    worker, by :func:`wire_json`) from ``model``, its prompt (the end's input, else
    ``prompt``: the start's) and its output."""
    raw: dict[str, Any] = {
        "type": run_type,
        "event": "end",
        "runId": run_id,
        "output": output,
        "input": input,
        "tokensUsage": usage or None,
        "metadata": metadata or None,
    }
    if run_type == "llm" and not usage:
        raw[_ESTIMATE_KEY] = (model, input or prompt, output)
    return raw


def error_event(
    run_type: str, run_id: str, error: BaseException | str, metadata: Any = None
) -> dict[str, Any]:
    """A run's error event: message and stack of an exception, or a message alone.

    A cancellation (``asyncio.CancelledError``: a client that went away, a timeout) is not
    the application failing: the run ends instead, marked ``cancelled`` in its metadata,
    so that it neither counts as an error nor stays 'started'.
    """
    if _is_cancellation(error):
        marked = {**(metadata or {}), "cancelled": True}
        return end_event(run_type, run_id, output=None, metadata=marked)
    payload = (
        error_payload(error) if isinstance(error, BaseException) else {"message": str(error), "stack": ""}
    )
    return {
        "type": run_type,
        "event": "error",
        "runId": run_id,
        "error": payload,
        "metadata": metadata or None,
    }


def _is_cancellation(error: BaseException | str) -> bool:
    asyncio = sys.modules.get("asyncio")  # not imported: no task can have been cancelled
    return asyncio is not None and isinstance(error, asyncio.CancelledError)


class StartRecord(NamedTuple):
    """A run start as the tracer queues it, built into its event on the worker.

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
        return start_event(
            self.run_type,
            self.run_id,
            parent=self.parent,
            name=self.name,
            input=self.payload,
            params=self.params,
            tags=tuple(self.tags) if self.tags else None,
            metadata=self.metadata,
            user_id=self.user_id,
            user_props=self.user_props,
            template_version_id=self.template_version_id,
            user=self.user,
            context_tags=self.context_tags,
            context_metadata=self.context_metadata,
        )


class EndRecord(NamedTuple):
    """A run end as the tracer queues it, built into its event on the worker."""

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
        return end_event(
            self.run_type,
            self.run_id,
            output=self.output,
            input=self.payload,
            usage=self.usage,
            metadata=self.metadata,
            model=self.model,
            prompt=self.prompt,
        )


class StampedEvent(NamedTuple):
    """Any other event (error, feedback, thread message): its raw dict and timestamp."""

    ts_ms: int
    raw: dict[str, Any]

    def build(self) -> dict[str, Any]:
        return dict(self.raw)


class FrameworkHook(Protocol):
    """A framework callback's arguments as an integration queues them (a named tuple).

    ``build`` runs on the worker, one record at a time and in queue order, and returns
    the event the callback makes (:func:`start_event`, :func:`end_event`...) or ``None``.
    It reads and changes the run registry of the tracer that queued it (``runs``), and
    emits nothing itself: housekeeping that emits events runs on the worker's tick.
    ``ns`` is the ``perf_counter_ns()`` reading behind ``ts_ms``, for durations.
    """

    def build(self, ts_ms: int, ns: int, runs: RunRegistry) -> dict[str, Any] | None: ...


# A hook that ends a run also has ``ended_run() -> str``, the run's id as the registry
# keeps it: if the sink drops the record, the run is noted (see ``HookRecord.dropped``).


# A named tuple made from a tuple, in C: a named tuple's own constructor is a Python
# function, and records are made for every hook on the application's thread.
new_record = tuple.__new__


class HookRecord(NamedTuple):
    """A :class:`FrameworkHook` stamped by the tracer that queued it."""

    ts_ms: int
    ns: int
    runs: RunRegistry
    hook: FrameworkHook

    def build(self) -> dict[str, Any] | None:
        try:
            return self.hook.build(self.ts_ms, self.ns, self.runs)
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: a bug costs one event
            failed(f"mapping {type(self.hook).__name__}", exc, "that event is not recorded")
            return None

    def dropped(self) -> None:
        """Called by the sink that drops this record (its queue full, or shut down), on the
        caller's thread. A record that ended a run leaves the run open in the registry,
        with no end to come: it is noted there, so that the tracer's sweep closes it as
        the dropped end it is (counted in ``stats()``), not as a run abandoned an hour
        later, which would report a run that succeeded as failed."""
        ended = getattr(self.hook, "ended_run", None)
        if ended is None:
            return
        try:
            self.runs.end_dropped(ended())
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form
            failed("noting a dropped end", exc)


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
    context_fields = done.get(_CONTEXT_KEY)
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
    """Turn a raw event into the exact JSON text the server accepts (see :func:`wire_event`)."""
    event = wire_event(queued, encoder)
    return None if event is None else event[0]


# ``(run type, event name, run id, parent id)``: what delivery orders events by.
Header = tuple[str, str, str, str | None]


def wire_event(queued: RawEvent, encoder: FieldEncoder) -> tuple[str, Header] | None:
    """Turn a raw event into the exact JSON text the server accepts, and its header (the
    fields the JSON starts with, which delivery reads for every event).

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
    run_id = _uuid_field(raw, "runId")
    parts = [f'{{"type":"{run_type}","event":"{name}","runId":"{run_id}"']
    parent = None if raw.get("parentRunId") is None else _uuid_field(raw, "parentRunId")
    if parent is not None:
        parts.append(f',"parentRunId":"{parent}"')
    ts = raw.get(TIMESTAMP_KEY)
    parts.append(f',"timestamp":"{format_timestamp(int(ts) if ts is not None else int(time.time() * 1000))}"')
    trailer: dict[str, Any] = {}  # metadata, usage and runtime: written last, see below
    for key, value in raw.items():
        if value is None:
            continue
        field = _FIELDS.get(key)
        if field is None:  # a field of no known name: plain JSON, unless it is internal
            if key.startswith("_"):
                continue
            field = _Field(_field_prefix(key), _plain_json)
        elif field is _HEADER:
            continue
        elif field is _TRAILER:
            trailer[key] = value
            continue
        text = field.write(value, encoder)
        if text is not None:
            parts.append(field.prefix)
            parts.append(text)
    metadata = flatten_metadata(trailer["metadata"], encoder) if "metadata" in trailer else None
    tokens = _tokens(trailer.get("tokensUsage"))
    estimate = raw.get(_ESTIMATE_KEY)
    if estimate and not tokens:
        model, prompt, completion = estimate
        tokens = estimate_usage(model, _counted(prompt), _counted(completion))
        metadata = {**(metadata or {}), "tokensEstimated": True}
    if tokens:  # known keys and integers: written as ``dumps`` would
        parts.append(
            ',"tokensUsage":{' + ",".join([f'"{key}":{count}' for key, count in tokens.items()]) + "}"
        )
    if metadata:
        parts.append(f',"metadata":{converted_json(metadata, _holds_float(metadata))}')
    runtime = trailer.get("runtime")
    parts.append(_RUNTIME_JSON if runtime is None else f',"runtime":{_text_json(runtime, encoder)}}}')
    return "".join(parts), (run_type, name, run_id, parent)


def _holds_float(metadata: dict[str, Any]) -> bool:
    """Whether flattened metadata holds a float (its values are scalars or lists of them)."""
    for value in metadata.values():
        if type(value) is float or (type(value) is list and any(type(item) is float for item in value)):
            return True
    return False


def _masked_json(value: Any, encoder: FieldEncoder) -> str | None:
    return encoder.encode_json(value, masked=True)


def _plain_json(value: Any, encoder: FieldEncoder) -> str | None:
    return encoder.encode_json(value, masked=False)


def _text_json(value: Any, encoder: FieldEncoder) -> str:
    return encoder.text_json(value if type(value) is str else _text(value))


def _template_json(value: Any, encoder: FieldEncoder) -> str | None:
    template = _template_version(value)
    return None if template is None else str(template)


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


# How each field is written (any other field: :func:`_plain_json`). The user's mask hook
# sees what the application exchanged with the model: inputs, outputs and messages.
_FIELD_WRITERS: dict[str, Callable[[Any, FieldEncoder], str | None]] = {
    "input": _masked_json,
    "output": _masked_json,
    "message": _masked_json,
    "feedback": _feedback_json,
    "tags": _tags_json,
    "threadTags": _tags_json,
    "userId": _text_json,
    "name": _text_json,
    "templateVersionId": _template_json,
    "params": _plain_json,
    "userProps": _plain_json,
    "error": _plain_json,
}
# Fields written after the loop: metadata and usage take what the estimate adds.
_TRAILER_FIELDS = frozenset({"metadata", "tokensUsage", "runtime"})


class _Field(NamedTuple):
    prefix: str  # ``,"key":``
    write: Callable[[Any, FieldEncoder], str | None]


# Every field an event may hold, looked up once per field: header fields (written
# before the loop) and trailer fields (after it) are markers; the others carry their
# prefix and writer.
_HEADER = _Field("", _plain_json)
_TRAILER = _Field("", _plain_json)
_FIELDS: dict[str, _Field] = {
    **{key: _HEADER for key in _HEADER_FIELDS},
    **{key: _TRAILER for key in _TRAILER_FIELDS},
    **{key: _Field(_field_prefix(key), write) for key, write in _FIELD_WRITERS.items()},
}
