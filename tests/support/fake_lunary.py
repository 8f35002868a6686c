"""A real HTTP server on 127.0.0.1 that answers like the Lunary ingestion API.

It mirrors the open-source Lunary server (``shared/lunary-server/src/packages/backend/src``:
``api/v1/runs/ingest.ts``, ``utils/ingest.ts``, the auth middleware in
``api/v1/auth/utils.ts``, ``utils/ratelimit.ts``) on what ``docs/PROTOCOL.md`` lists, so that
a test passing against the fake also holds against the real server
(``tests/e2e/real/test_fake_agrees.py`` checks the two side by side):

- statuses and bodies, worded as the real server words them: the auth middleware's 401s
  (unknown key, token not UUID-shaped, public key off the public route), 402 without a key,
  400 for bodies its JSON parser refuses, 413 over the body limit, 500 "Missing events payload."
  (including a non-JSON content type), a ``null`` element failing the whole request, 404 for
  other routes; the rate limiter's headers and its plain-text 429;
- events cleaned as ``cleanEvent`` cleans them (every key camel-cased at every depth, flat
  metadata only, ids that are not 36 characters long hashed into UUIDs, ``models/`` cut from
  names), each batch sorted by timestamp with the server's comparator, ``[ev]`` unwrapped;
- what ``registerRunEvent`` does with them, in :attr:`FakeLunary.runs` (one row per run, with
  the columns of the real ``run`` table): start inserts (a second start fails), end/error/
  feedback/update change the row when there is one, metadata ``tags``/``templateId``/
  ``templateVersionId`` read as run fields (and failing the event the way Postgres does), the
  user cascading to children, thread ``chat`` messages merged into one ``chat`` run per exchange,
  and the 5 s sleep (:attr:`FakeLunary.orphan_delay`) for a child whose parent is not stored and
  for an llm end whose start is not;
- concurrency: overlapping requests are processed in parallel, as the real server does; only
  the fake's own bookkeeping is locked, one event at a time.

Not mirrored (no database, no tokenizer): token estimation for an llm end without usage, costs,
ingestion rules, ``appId`` re-routing to another project, form-encoded bodies, the exact text of
the JSON parser's messages, and the engine's order for events whose timestamps do not parse.

On top of that it injects the faults a real deployment shows: error statuses, rate limiting
with ``Retry-After``, slow or hung answers, connection resets, malformed bodies, and going down
and coming back on the same port. Tests read the cleaned events it accepted from
:attr:`FakeLunary.events` and the stored runs from :attr:`FakeLunary.runs`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

INGEST_PATH = "/v1/runs/ingest"
DUPLICATE_START = "Run with this ID already exists in the database."
BODY_LIMIT = 20 * 1024 * 1024  # koa-bodyparser jsonLimit "20mb"
ORPHAN_DELAY = 5.0  # registerRunEvent's setTimeout(5000) before its one retry
RATE_LIMIT = 100_000  # requests per minute per client: server.sh's default (a stock server: 150)
RATE_LIMIT_WINDOW = 60.0  # koa-ratelimit's ``duration`` in the real server: fixed, 60 s
RATE_LIMIT_MESSAGE = "Sometimes You Just Have to Slow Down."
JSON_TYPES = (
    "application/json",
    "application/json-patch+json",
    "application/vnd.api+json",
    "application/csp-report",
    "application/scim+json",
)
JSON_CONTENT_TYPE = "application/json; charset=utf-8"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
PKEY_VIOLATION = 'duplicate key value violates unique constraint "run_pkey"'
TEMPLATE_FKEY_VIOLATION = (
    'insert or update on table "run" violates foreign key constraint "run_template_version_id_fkey"'
)
ROW_FIELDS = (
    "id",
    "parent_run_id",
    "type",
    "name",
    "status",
    "tags",
    "input",
    "output",
    "error",
    "params",
    "metadata",
    "prompt_tokens",
    "completion_tokens",
    "cached_prompt_tokens",
    "cost",
    "created_at",
    "ended_at",
    "feedback",
    "runtime",
    "template_version_id",
    "user",
)


class _Undefined:
    """JavaScript's ``undefined``: a key that is absent, as opposed to one that is ``null``."""

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Any = _Undefined()


@dataclass
class Fault:
    """What to do instead of (or besides) a normal answer, for one request."""

    status: int | None = None  # answer this status without processing
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    reset: bool = False  # drop the connection without an answer
    process: bool = False  # process the events first, then apply the fault
    retry_after: float | None = None  # a 429 of a used-up window, that resets in so many seconds


@dataclass
class Request:
    """One request the server received, as recorded for assertions."""

    path: str
    headers: dict[str, str]
    status: int
    events: int
    received_at: float


@dataclass
class Reply:
    """An answer: status, body, extra headers; ``events`` counts the batch's elements."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    events: int = 0


class EventFailed(Exception):
    """An error ``processEventsIngestion`` catches: that event answers ``success: false``."""


class RequestFailed(Exception):
    """An error that escapes ``processEventsIngestion``: the whole request answers 500."""


# --- JavaScript semantics the server relies on -----------------------------------------


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness (``[]`` and ``{}`` are true, unlike in Python)."""
    if value is UNDEFINED or value is None:
        return False
    if isinstance(value, (bool, int, float, str)):
        return bool(value) and not (isinstance(value, float) and math.isnan(value))
    return True


def js_or(*values: Any) -> Any:
    """``a || b || c``: the first truthy operand, else the last one."""
    for value in values:
        if js_truthy(value):
            return value
    return values[-1]


def js_number(value: float) -> str:
    """``String(n)`` for a JSON number (``7.0`` parses as the integer 7 in JavaScript)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value) if isinstance(value, int) else repr(value)


def js_units(text: str) -> list[str]:
    """A string's UTF-16 code units, as JavaScript indexes and measures it."""
    raw = text.encode("utf-16-le", "surrogatepass")
    return [raw[i : i + 2].decode("utf-16-le", "surrogatepass") for i in range(0, len(raw), 2)]


def js_entries(value: Any) -> list[tuple[str, Any]]:
    """``Object.entries(value)`` (also what ``{...value}`` copies)."""
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, str):
        return [(str(i), unit) for i, unit in enumerate(js_units(value))]
    if isinstance(value, list):
        return [(str(i), item) for i, item in enumerate(value)]
    return []


def js_get(value: Any, key: str) -> Any:
    """``value?.[key]``: undefined unless ``value`` is an object that has it."""
    return value.get(key, UNDEFINED) if isinstance(value, dict) else UNDEFINED


_ISO_DATE = re.compile(
    r"([+-]\d{6}|\d{4})(?:-(\d\d)(?:-(\d\d))?)?"
    r"(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?(Z|[+-]\d\d:\d\d)?)?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_TIME = 8.64e15


def js_date_ms(value: Any) -> float:
    """``new Date(value).getTime()`` for JSON values: NaN when invalid. Strings are read in
    the ISO 8601 form the protocol uses, as leniently as the engine (a day past the month's
    end rolls over, 24:00 is the next day, a time without offset is UTC: the server's zone);
    the engine's fallback parser for other formats is not mirrored."""
    if value is None:
        return 0.0
    if isinstance(value, (bool, int, float)):
        number = float(value) if abs(value) <= _MAX_TIME else math.nan
        return math.nan if math.isnan(number) else float(math.trunc(number))
    match = _ISO_DATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return math.nan
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    fields = (int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0))
    if not (1 <= fields[0] <= 12 and 1 <= fields[1] <= 31 and fields[2] <= 24 and max(fields[3:]) <= 59):
        return math.nan
    try:
        moment = datetime(int(year), fields[0], 1, tzinfo=timezone.utc)
    except ValueError:
        return math.nan
    moment += timedelta(days=fields[1] - 1, hours=fields[2], minutes=fields[3], seconds=fields[4])
    ms = (moment - _EPOCH) // timedelta(milliseconds=1) + int((fraction or "0")[:3].ljust(3, "0"))
    if offset and offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        ms -= sign * (int(offset[1:3]) * 60 + int(offset[4:6])) * 60_000
    return float(ms) if abs(ms) <= _MAX_TIME else math.nan


def iso_from_ms(ms: float) -> str | None:
    """``Date.prototype.toISOString()`` (years 1 to 9999; None outside them)."""
    try:
        moment = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return str(iso_from_ms(time.time() * 1000 // 1))


def _sorted_by_timestamp(batch: list[Any]) -> list[Any]:
    """The batch in the server's order, each timestamp read once (not once per comparison)."""
    if None in batch:
        return sorted(batch, key=functools.cmp_to_key(_compare_timestamps))  # throws as the server does
    times = [
        js_date_ms(item.get("timestamp", UNDEFINED)) if isinstance(item, dict) else math.nan for item in batch
    ]
    by_time = functools.cmp_to_key(lambda i, j: _compare_times(times[i], times[j]))
    order = sorted(range(len(batch)), key=by_time)
    return [batch[i] for i in order]


def _compare_times(a: float, b: float) -> int:
    difference = a - b
    return 0 if math.isnan(difference) else (difference > 0) - (difference < 0)


def _compare_timestamps(a: Any, b: Any) -> int:
    """processEventsIngestion's comparator: ``new Date(a.timestamp) - new Date(b.timestamp)``
    (NaN, for a missing or unreadable timestamp, counts as equal); a null element throws."""
    times = []
    for name, item in (("a", a), ("b", b)):
        if item is None:
            raise RequestFailed(f"null is not an object (evaluating '{name}.timestamp')")
        times.append(js_date_ms(item.get("timestamp", UNDEFINED)) if isinstance(item, dict) else math.nan)
    difference = times[0] - times[1]
    return 0 if math.isnan(difference) else (difference > 0) - (difference < 0)


# --- cleanEvent (utils/ingest.ts) ----------------------------------------------------------

_SNAKE_OR_KEBAB = re.compile(r"[-_][a-z]", re.IGNORECASE | re.ASCII)
_METADATA_SCALARS = (str, int, float)  # bool is an int


def to_camel(value: Any) -> Any:
    """recursiveToCamel: every key at every depth, ``tool_calls`` -> ``toolCalls``."""
    if isinstance(value, list):
        return [to_camel(item) for item in value]
    if isinstance(value, dict):
        return {_SNAKE_OR_KEBAB.sub(lambda m: m.group()[1].upper(), k): to_camel(v) for k, v in value.items()}
    return value


def clean_metadata(value: Any) -> Any:
    """cleanMetadata: only top-level strings, numbers, booleans and arrays of those (and the
    ``enrichment`` key) are kept; nested objects and nulls are dropped."""
    if not js_truthy(value):
        return UNDEFINED

    def kept(key: str, item: Any) -> bool:
        if key == "enrichment" or isinstance(item, _METADATA_SCALARS):
            return True
        return isinstance(item, list) and all(isinstance(v, _METADATA_SCALARS) for v in item)

    return {key: item for key, item in js_entries(value) if kept(key, item)}


def uuid_from_seed(seed: str) -> str:
    """uuidFromSeed: the SHA-256 of the string shaped as a UUID (version 4, variant ``a``)."""
    text = seed.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")  # TextEncoder
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"


def js_length(text: str) -> int:
    """``text.length`` in JavaScript: UTF-16 code units."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le", "surrogatepass")) // 2


def ensure_is_uuid(value: Any) -> Any:
    """ensureIsUUID: a 36-character (or empty) string is kept, another string hashed."""
    if not isinstance(value, str):
        return UNDEFINED
    if not value or js_length(value) == 36:
        return value
    return uuid_from_seed(value)


_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def pg_uuid(value: str) -> str | None:
    """PostgreSQL's uuid input (``string_to_uuid``): the canonical form, or None if refused."""
    if _CANONICAL.fullmatch(value):
        return value  # the common case, already canonical
    src, braces = (value[1:], True) if value.startswith("{") else (value, False)
    digits, i = [], 0
    for byte in range(16):
        pair = src[i : i + 2]
        if len(pair) < 2 or any(c not in "0123456789abcdefABCDEF" for c in pair):
            return None
        digits.append(pair.lower())
        i += 2
        if src[i : i + 1] == "-" and byte % 2 == 1 and byte < 15:
            i += 1
    if braces:
        if src[i : i + 1] != "}":
            return None
        i += 1
    if i != len(src):
        return None
    text = "".join(digits)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def clean_event(raw: dict[str, Any]) -> dict[str, Any]:
    """cleanEvent: keys camel-cased, metadata flattened, ids hashed, ``models/`` cut from the
    name, a string ``tags`` made a list, the timestamp normalised (dropped when unreadable).
    The token estimation that follows it is :meth:`FakeLunary._complete_usage`."""
    event = to_camel(raw)
    popped = {key: event.pop(key, UNDEFINED) for key in ("timestamp", "runId", "parentRunId", "tags", "name")}
    name, tags = popped["name"], popped["tags"]
    ms = js_date_ms(popped["timestamp"])
    timestamp = None if math.isnan(ms) else iso_from_ms(ms)
    cleaned = {
        **event,
        "metadata": clean_metadata(event.get("metadata", UNDEFINED)),
        "name": name.replace("models/", "", 1) if isinstance(name, str) else UNDEFINED,
        "tags": [tags] if isinstance(tags, str) else tags,
        "runId": ensure_is_uuid(popped["runId"]),
        "parentRunId": ensure_is_uuid(popped["parentRunId"]),
        "timestamp": UNDEFINED if timestamp is None else timestamp,
    }
    return {key: value for key, value in cleaned.items() if value is not UNDEFINED}


# --- how PostgreSQL and postgres.js refuse a column value --------------------------------

# Which check fails first when several would: postgres.js serialises before sending; then the
# server types the statement, converts the parameters, runs the NOT NULL checks and last the
# foreign keys. Within a stage, the first column of the statement wins.
_CLIENT, _TYPING, _INPUT, _NOT_NULL, _FOREIGN_KEY = range(5)


def _text_array_problem(column: str, value: Any) -> tuple[int, str] | None:
    if value is UNDEFINED or value is None:
        return None
    if isinstance(value, bool) or (isinstance(value, list) and value and isinstance(value[0], bool)):
        return _TYPING, f'column "{column}" is of type text[] but expression is of type boolean'
    if isinstance(value, (int, float)):
        return _CLIENT, (
            'The "string" argument must be of type string or an instance of Buffer or ArrayBuffer. '
            f"Received type number ({js_number(value)})"
        )
    if isinstance(value, dict):
        return _CLIENT, (
            'The "string" argument must be of type string or an instance of Buffer or ArrayBuffer. '
            "Received an instance of Object"
        )
    if isinstance(value, str):
        return _INPUT, f'malformed array literal: "{value}"'
    return None


def _integer_problem(column: str, value: Any) -> tuple[int, str] | None:
    if value is UNDEFINED or value is None:
        return None
    if isinstance(value, bool):
        return _TYPING, f'column "{column}" is of type integer but expression is of type boolean'
    text = js_number(value) if isinstance(value, (int, float)) else value
    if not isinstance(text, str):
        text = json.dumps(text, separators=(",", ":"))
    if not re.fullmatch(r"\s*[+-]?\d+\s*", text):
        return _INPUT, f'invalid input syntax for type integer: "{text}"'
    if not -(2**31) <= int(text) < 2**31:
        return _INPUT, f'value "{text}" is out of range for type integer'
    return None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def _jsonb_problem(column: str, value: Any, *, explicit: bool = False) -> tuple[int, str] | None:
    """A jsonb column: a bare boolean is typed as boolean (unless sent with ``sql.json``), and
    a NUL character is refused."""
    if isinstance(value, bool) and not explicit:
        return _TYPING, f'column "{column}" is of type jsonb but expression is of type boolean'
    if _has_nul(value):
        return _INPUT, "unsupported Unicode escape sequence"
    return None


def _not_null(column: str, value: Any) -> tuple[int, str] | None:
    if value is None or value is UNDEFINED:
        return _NOT_NULL, f'null value in column "{column}" of relation "run" violates not-null constraint'
    return None


def _first_problem(problems: list[tuple[int, str] | None]) -> None:
    found = [problem for problem in problems if problem is not None]
    if found:
        raise EventFailed(min(found, key=lambda problem: problem[0])[1])


def _as_text_array(value: Any) -> Any:
    """How a JSON array lands in a text[] column: numbers as their JavaScript text."""
    if not isinstance(value, list):
        return None if value is UNDEFINED else value
    return [js_number(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]


def _as_integer(value: Any) -> int | None:
    if value is UNDEFINED or value is None:
        return None
    return int(js_number(value) if isinstance(value, (int, float)) else value)


def _stored(value: Any) -> Any:
    return None if value is UNDEFINED else value


def _uuid_problem(value: Any) -> tuple[int, str] | None:
    if isinstance(value, str) and pg_uuid(value) is None:
        return _INPUT, f'invalid input syntax for type uuid: "{value}"'
    return None


def _uuid_or_fail(value: str) -> str:
    _first_problem([_uuid_problem(value)])
    return str(pg_uuid(value))


def _spread(value: Any) -> list[Any]:
    """``[...(value || [])]``."""
    if not js_truthy(value):
        return []
    if isinstance(value, (list, str)):
        return list(value)
    raise EventFailed("Spread syntax requires ...iterable[Symbol.iterator] to be a function")


_INGEST_ROUTE = re.compile(re.escape(INGEST_PATH) + "/?", re.IGNORECASE)  # koa-router: not strict
OUTPUT_ROLES = ("assistant", "tool", "bot")
INPUT_ROLES = ("user", "system")


class FakeLunary:
    """The fake server. ``start()`` binds a free port (or the previous one after ``stop()``).

    ``key`` is the project's public key (and, as on the real server, its project id);
    ``private_key`` also opens the routes a public key may not use.
    """

    def __init__(
        self,
        key: str | None = None,
        *,
        body_limit: int = BODY_LIMIT,
        orphan_delay: float = ORPHAN_DELAY,
        rate_limit: int = RATE_LIMIT,
        rate_window: float = RATE_LIMIT_WINDOW,
    ) -> None:
        self.key = key or str(uuid.uuid4())
        self.private_key = str(uuid.uuid4())
        self.valid_keys = {self.key}  # public keys; clear it to make every key unknown
        self.body_limit = body_limit
        self.orphan_delay = orphan_delay  # the real server sleeps 5 s; tests that make orphans lower it
        self.rate_limit = rate_limit  # requests per window (the real server's MAX_REQUESTS_PER_MINUTE)
        self.rate_window = rate_window  # seconds; shorter than the real 60 s, tests of the limit are quick
        self.template_versions: set[int] = set()  # existing template version ids (none by default)
        self.events: list[dict[str, Any]] = []  # accepted events, cleaned, in processing order
        self.runs: dict[str, dict[str, Any]] = {}  # stored runs by id: the ``run`` table's rows
        self.users: dict[str, Any] = {}  # external user id -> its props, as last sent
        self.rejected: list[tuple[Any, str]] = []  # events answered success: false, with the error
        self.orphans: list[str] = []  # starts whose parent was not stored yet (each cost orphan_delay)
        self.unmatched: list[str] = []  # end/error events whose run was not stored yet
        self.requests: list[Request] = []
        self.max_in_flight = 0
        self.delay = 0.0  # added to every answer
        self.fail_event_ids: set[str] = set()  # runIds answered success: false
        self._faults: deque[Fault] = deque()
        self._in_flight = 0
        self._limit_reset = 0.0
        self._limit_remaining = 0
        self._lock = threading.RLock()  # the fake's bookkeeping; requests themselves run in parallel
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ingest_url(self) -> str:
        return self.url + INGEST_PATH

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> FakeLunary:
        """Listen (again) on :attr:`port`, or on a free port the first time."""
        handler = type("Handler", (_Handler,), {"fake": self})
        deadline = time.monotonic() + 5.0
        while True:
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (clients see the server gone)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _reset(conn)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeLunary:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- fault injection --------------------------------------------------------------

    def fail_next(
        self, count: int, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next ``count`` requests with ``status`` without storing anything."""
        raw = body if isinstance(body, bytes) else json.dumps(body or {"message": "injected"}).encode()
        for _ in range(count):
            self._faults.append(Fault(status=status, body=raw, headers=dict(headers or {})))

    def rate_limit_next(self, count: int, retry_after: float = 1) -> None:
        """Answer 429 like the real limiter with its window used up (plain text, the limit's
        headers, ``Retry-After``; the real one counts whole seconds, a fraction here keeps
        tests short), whatever the fake's own count says."""
        for _ in range(count):
            self._faults.append(Fault(status=429, retry_after=retry_after))

    def malformed_next(self, count: int) -> None:
        """Answer 200 with a body that is not JSON."""
        for _ in range(count):
            self._faults.append(Fault(status=200, body=b"<html>gateway</html>"))

    def reset_next(self, count: int, *, after_processing: bool = False) -> None:
        """Drop the connection without answering (optionally after storing the events)."""
        for _ in range(count):
            self._faults.append(Fault(reset=True, process=after_processing))

    def slow_next(self, count: int, seconds: float) -> None:
        """Wait ``seconds`` before answering the next ``count`` requests (then answer normally)."""
        for _ in range(count):
            self._faults.append(Fault(delay=seconds, process=True))

    def clear_faults(self) -> None:
        self._faults.clear()

    # --- inspection -------------------------------------------------------------------

    def ids(self, event: str = "start") -> list[str]:
        return [e["runId"] for e in self.events if e.get("event") == event]

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The stored row for ``run_id`` (as sent: hashed and matched as the server does)."""
        canonical = pg_uuid(str(ensure_is_uuid(run_id)))
        with self._lock:
            return self.runs.get(canonical) if canonical else None

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` events are stored."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # --- the HTTP layer: middlewares in the real server's order ------------------------

    def _next_fault(self) -> Fault | None:
        try:
            return self._faults.popleft()
        except IndexError:
            return None

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        """What the real server answers: auth, then rate limit, then body parser, then route."""
        path = urlsplit(target).path
        public_route = path == INGEST_PATH
        auth = headers.get("authorization")
        parts = auth.split(" ") if auth is not None else []
        bearer = parts[1] if len(parts) > 1 else ""
        key = bearer or headers.get("x-api-key") or ""
        project = None
        if not (public_route and not key):
            if re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", key):
                kind = self._key_kind(key)
                if kind is None:
                    return _message(401, "Invalid API key")
                if kind == "public" and not public_route:
                    return _message(401, "This route requires a private API key")
                project = self.key
            elif not bearer:
                return _message(404, "Not Found")  # the middleware returns without answering
            else:
                return _message(401, "Invalid access token")  # not a session JWT either
        limited, limit_headers = self._count_request()
        if limited is not None:
            return limited
        reply = self._route(method, path, headers, body, project)
        reply.headers = {**limit_headers, **reply.headers}
        return reply

    def _key_kind(self, key: str) -> str | None:
        """Keys are UUID columns (case does not matter). The fake's public key is also its
        project id, which the real server accepts as a public key too."""
        if key.lower() in {valid.lower() for valid in self.valid_keys}:
            return "public"
        return "private" if key.lower() == self.private_key.lower() else None

    def _count_request(self) -> tuple[Reply | None, dict[str, str]]:
        """koa-ratelimit's memory driver: ``rate_limit`` requests per window per client. A
        window starts with the first request after the previous one ended; every answer
        carries the limiter's headers (the requests left after this one, the reset in Unix
        seconds with microseconds, the limit), and a request past the limit gets the 429."""
        with self._lock:
            now = time.time()
            if now > self._limit_reset:
                self._limit_reset, self._limit_remaining = now + self.rate_window, self.rate_limit
            else:
                self._limit_remaining = max(self._limit_remaining - 1, 0)
            remaining, reset = self._limit_remaining, self._limit_reset
        headers = self._limit_headers(max(remaining - 1, 0), reset)
        if remaining:
            return None, headers
        return self._too_many(headers, reset - now), headers

    def _limit_headers(self, remaining: int, reset: float) -> dict[str, str]:
        return {
            "Rate-Limit-Remaining": str(remaining),
            "Rate-Limit-Reset": js_number(round(reset, 6)),
            "Rate-Limit-Total": str(self.rate_limit),
        }

    def _too_many(self, headers: dict[str, str], resets_in: float) -> Reply:
        """The limiter's 429: ``Retry-After`` in whole seconds to the reset (``| 0``)."""
        retry = {**headers, "Retry-After": str(int(resets_in)), "Content-Type": TEXT_CONTENT_TYPE}
        return Reply(429, RATE_LIMIT_MESSAGE.encode(), retry)

    def rate_limited(self, retry_after: float) -> Reply:
        """The 429 of a window used up that resets in ``retry_after`` seconds, said as is."""
        reply = self._too_many(self._limit_headers(0, time.time() + retry_after), retry_after)
        reply.headers["Retry-After"] = f"{retry_after:g}"
        return reply

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes, project: str | None
    ) -> Reply:
        content_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
        payload: Any = {}
        if content_type in JSON_TYPES:
            if len(body) > self.body_limit:
                return _message(413, "request entity too large")
            try:
                payload = _parse_json(body)
            except ValueError as error:
                return _message(400, str(error))
        if method != "POST" or not _INGEST_ROUTE.fullmatch(path):
            return _message(404, "Not Found")  # (GET /v1/runs/:id, another route, is not mirrored)
        if project is None:
            return _message(402, "Incorrect project id format")
        events = payload.get("events") if isinstance(payload, dict) else None
        if not js_truthy(events):
            return _message(500, "Missing events payload.")
        batch = events if isinstance(events, list) else [events]
        try:
            results = self.ingest(batch)
        except RequestFailed as error:
            return Reply(500, _json({"message": str(error)}), events=len(batch))
        return Reply(200, _json({"results": results}), events=len(batch))

    # --- processEventsIngestion -------------------------------------------------------

    def ingest(self, batch: list[Any]) -> list[dict[str, Any]]:
        """Sort the batch by timestamp (stable), then register its events one by one."""
        results: list[dict[str, Any]] = []
        for item in _sorted_by_timestamp(batch):
            event = item[0] if isinstance(item, list) and len(item) == 1 else item
            if event is None:
                raise RequestFailed("null is not an object (evaluating 'event.runId')")
            result = {"id": event["runId"]} if isinstance(event, dict) and "runId" in event else {}
            cleaned: Any = event
            try:
                if isinstance(event, dict):  # anything else carries no field the server reads
                    cleaned = self._clean(event)
                    self._register(event, cleaned)
            except EventFailed as error:
                with self._lock:
                    self.rejected.append((cleaned, str(error)))
                results.append({**result, "success": False, "error": str(error)})
            else:
                if isinstance(cleaned, dict):
                    with self._lock:
                        self.events.append(cleaned)
                results.append({**result, "success": True})
        return results

    def _clean(self, raw: dict[str, Any]) -> dict[str, Any]:
        cleaned = clean_event(raw)
        usage = self._complete_usage(cleaned)
        if usage is UNDEFINED:
            cleaned.pop("tokensUsage", None)
        return cleaned

    def _complete_usage(self, event: dict[str, Any]) -> Any:
        """completeRunUsage: an llm end without both counts is estimated from the stored run;
        when that run has no name (or is missing) the event's counts are dropped. The fake does
        not estimate: it keeps the counts sent."""
        usage = event.get("tokensUsage", UNDEFINED)
        if event.get("type") != "llm" or event.get("event") != "end":
            return usage
        if js_truthy(js_get(usage, "prompt")) and js_truthy(js_get(usage, "completion")):
            return usage
        rid = event.get("runId")
        canonical = pg_uuid(rid) if isinstance(rid, str) else None
        if isinstance(rid, str) and canonical is None:
            return usage  # the lookup fails and cleanEvent keeps the event as it is
        with self._lock:
            row = self.runs.get(canonical) if canonical else None
        return usage if row is not None and isinstance(row["name"], str) else UNDEFINED

    def _register(self, raw: dict[str, Any], event: dict[str, Any]) -> None:
        if raw.get("runId") in self.fail_event_ids or event.get("runId") in self.fail_event_ids:
            raise EventFailed("injected failure")
        if event.get("type") == "log":  # registerLogEvent: its table is gone
            if event.get("parentRunId") is None or event.get("event") is None:
                raise EventFailed("parentRunId and eventName must be defined")
            raise EventFailed('relation "log" does not exist')
        retry = True
        while True:
            with self._lock:
                wait = self._register_run(event, retry)
            if not wait:
                return
            time.sleep(self.orphan_delay)
            retry = False

    # --- registerRunEvent (called with the lock held) ---------------------------------

    def _register_run(self, event: dict[str, Any], retry: bool) -> bool:
        """Apply one event to the stored runs; True: sleep, then call again with ``retry`` off."""
        kind, rid = event.get("event"), event.get("runId", UNDEFINED)
        metadata = event.get("metadata", UNDEFINED)
        app_id = event.get("appId")
        if isinstance(app_id, str):
            _uuid_or_fail(app_id)  # looked up as a key (another project's key is not mirrored)
        tags = event.get("tags", UNDEFINED)
        if not js_truthy(tags):
            tags = js_get(metadata, "tags")
        template = event.get("templateVersionId", UNDEFINED)
        if not js_truthy(template):
            template = js_or(
                event.get("templateId", UNDEFINED),
                js_get(metadata, "templateId"),
                js_get(metadata, "templateVersionId"),
            )
        user = None
        user_id = event.get("userId")
        if isinstance(user_id, str) and kind not in ("end", "error"):
            self.users[user_id] = event.get("userProps")
            user = user_id
        parent = event.get("parentRunId", UNDEFINED)
        if kind == "start" and js_truthy(parent):
            parent_row = self.runs.get(_uuid_or_fail(parent))
            if parent_row is None:
                if retry:
                    self.orphans.append(str(rid))
                    return True
                parent = UNDEFINED  # stored as a root
            elif parent_row["user"] is not None:
                user = parent_row["user"]  # children inherit the parent's user
        llm_end = kind == "end" and event.get("type") == "llm"
        if llm_end and retry and self._row(rid) is None:
            self.unmatched.append(str(rid))
            return True
        if kind == "start":
            self._insert_start(event, tags, template, parent, user)
        elif kind == "end":
            self._end(event)
        elif kind == "error":  # an update without a select: no row, no change
            _first_problem([_jsonb_problem("error", event.get("error")), _uuid_problem(rid)])
            row = self._row(rid)
            if row is not None:
                row.update(ended_at=event.get("timestamp"), status="error", error=event.get("error"))
            else:
                self.unmatched.append(str(rid))
        elif kind == "feedback":  # shallow merge, also of the legacy `extra`
            row = self._row(rid)
            merged = {
                **dict(js_entries(row["feedback"] if row else None)),
                **dict(js_entries(event.get("feedback"))),
                **dict(js_entries(event.get("extra"))),
            }
            _first_problem([_jsonb_problem("feedback", merged, explicit=True)])
            if row is not None:
                row["feedback"] = merged
        elif kind == "chat":
            self._chat(event, user)
        elif kind == "update" and event.get("type") == "llm":
            row = self._row(rid)
            if row is not None:
                row["metadata"] = metadata if js_truthy(metadata) else {}
        elif kind == "custom-event":
            self._custom_event(event, user)
        return False  # any other event name: nothing to do, success

    def _row(self, rid: Any) -> dict[str, Any] | None:
        """``select ... where id = $1``: an id Postgres cannot read fails the event."""
        if not isinstance(rid, str):
            return None
        return self.runs.get(_uuid_or_fail(rid))

    def _insert_start(self, event: dict[str, Any], tags: Any, template: Any, parent: Any, user: Any) -> None:
        rid = event.get("runId", UNDEFINED)
        if rid is UNDEFINED:
            raise EventFailed(DUPLICATE_START)  # `dbRun?.id === runId`: undefined === undefined
        canonical = _uuid_or_fail(rid)
        existing = self.runs.get(canonical)
        if existing is not None:
            raise EventFailed(DUPLICATE_START if existing["id"] == rid else PKEY_VIOLATION)
        params = js_or(event.get("params", UNDEFINED), event.get("extra", UNDEFINED))
        run_type = event.get("type")
        _first_problem(
            [
                _text_array_problem("tags", tags),
                _jsonb_problem("params", params),
                _jsonb_problem("metadata", _stored(event.get("metadata", UNDEFINED))),
                _integer_problem("template_version_id", template),
                _uuid_problem(parent),
                _jsonb_problem("input", event.get("input")),
                _not_null("type", run_type),
            ]
        )
        version = _as_integer(template)
        if version is not None and version not in self.template_versions:
            raise EventFailed(TEMPLATE_FKEY_VIOLATION)
        self._insert(
            id=canonical,
            parent_run_id=pg_uuid(parent) if isinstance(parent, str) else None,
            type=run_type,
            name=event.get("name"),
            status="started",
            tags=_as_text_array(tags),
            input=event.get("input"),
            params=_stored(params),
            metadata=event.get("metadata"),
            created_at=event.get("timestamp") or now_iso(),
            runtime=event.get("runtime"),
            template_version_id=version,
            user=user,
        )

    def _insert(self, **columns: Any) -> dict[str, Any]:
        row = {name: None for name in ROW_FIELDS}
        row.update(cached_prompt_tokens=0, **columns)
        self.runs[row["id"]] = row
        return row

    def _end(self, event: dict[str, Any]) -> None:
        rid = event.get("runId", UNDEFINED)
        row = self._row(rid)
        if row is None:
            if rid not in self.unmatched:
                self.unmatched.append(str(rid))
            return
        usage = event.get("tokensUsage", UNDEFINED)
        output = event.get("output", UNDEFINED)
        if isinstance(output, bool):
            output = json.dumps(output)
        metadata = event.get("metadata", UNDEFINED)
        if js_truthy(metadata):
            metadata = {**(row["metadata"] or {}), **metadata}
        cached = js_get(usage, "promptCached")
        changes = {
            "ended_at": event.get("timestamp", UNDEFINED),
            "output": output,
            "status": "success",
            "prompt_tokens": js_get(usage, "prompt"),
            "completion_tokens": js_get(usage, "completion"),
            "cached_prompt_tokens": 0 if cached is UNDEFINED or cached is None else cached,
            "metadata": metadata if js_truthy(metadata) else UNDEFINED,
        }
        if js_truthy(event.get("input")):
            changes["input"] = event["input"]
        _first_problem(
            [
                _jsonb_problem("output", _stored(output)),
                _integer_problem("prompt_tokens", changes["prompt_tokens"]),
                _integer_problem("completion_tokens", changes["completion_tokens"]),
                _integer_problem("cached_prompt_tokens", changes["cached_prompt_tokens"]),
                _jsonb_problem("metadata", _stored(changes["metadata"])),
                _jsonb_problem("input", changes.get("input")),
            ]
        )
        for column in ("prompt_tokens", "completion_tokens", "cached_prompt_tokens"):
            changes[column] = _as_integer(changes[column]) if changes[column] is not UNDEFINED else UNDEFINED
        row.update({column: value for column, value in changes.items() if value is not UNDEFINED})

    # --- threads: ingestChatEvent and custom events -----------------------------------

    def _upsert_thread(self, event: dict[str, Any], user: Any, message: Any = UNDEFINED) -> dict[str, Any]:
        thread_id = event.get("parentRunId")
        if not isinstance(thread_id, str):
            raise EventFailed("No parent run ID provided")
        canonical = _uuid_or_fail(thread_id)
        thread_tags = event.get("threadTags", UNDEFINED)
        _first_problem(
            [
                _text_array_problem("tags", thread_tags),
                _jsonb_problem("input", _stored(message)),
                _jsonb_problem("metadata", _stored(event.get("threadMetadata", UNDEFINED))),
            ]
        )
        row = self.runs.get(canonical)
        if row is None:
            return self._insert(
                id=canonical,
                type="thread",
                user=user,
                tags=_as_text_array(thread_tags),
                input=_stored(message),
                metadata=_stored(event.get("threadMetadata", UNDEFINED)),
                created_at=now_iso(),
            )
        row.update(user=user, tags=_as_text_array(thread_tags))  # on conflict: overwritten
        if message is not UNDEFINED:
            row["input"] = message
        return row

    def _chat(self, event: dict[str, Any], user: Any) -> None:
        """ingestChatEvent: a user message opens a ``chat`` run under the thread, the next
        assistant message closes it; the run takes the id of the latest message."""
        message = event.get("message")
        if message is None:
            raise EventFailed("Cannot destructure property 'role' from null or undefined value")
        fields = dict(js_entries(message))
        role, extra = fields.get("role", UNDEFINED), fields.get("extra", UNDEFINED)
        core = {
            "role": role,
            "content": fields.get("content", UNDEFINED),
            "metadata": js_or(fields.get("metadata", UNDEFINED), extra),
        }
        core = {key: value for key, value in core.items() if value is not UNDEFINED}
        thread = self._upsert_thread(event, user, core)
        siblings = [row for row in self.runs.values() if row["parent_run_id"] == thread["id"]]
        # the thread's latest run by created_at (of ties, the last stored: Postgres leaves it open)
        previous = max(reversed(siblings), key=lambda row: row["created_at"], default=None)
        rid = event.get("runId", UNDEFINED)
        shared = {
            "id": _uuid_or_fail(rid) if isinstance(rid, str) else UNDEFINED,
            "tags": fields.get("tags", UNDEFINED),
            "metadata": js_or(fields.get("metadata", UNDEFINED), extra),
            "user": user if user is not None else UNDEFINED,
            "feedback": event.get("feedback", UNDEFINED),
        }
        update: dict[str, Any] = {}
        insert = True
        if previous is not None and js_truthy(fields.get("isRetry")):
            raise EventFailed('column "sibling_run_id" of relation "run" does not exist')
        if previous is not None and previous["type"] == "custom-event":
            if role in OUTPUT_ROLES:
                update["output"] = [core]
            elif role in INPUT_ROLES:
                update["input"] = [core]
        elif previous is not None and role in OUTPUT_ROLES:
            update["output"], insert = [*_spread(previous["output"]), core], False
        elif previous is not None and role in INPUT_ROLES:
            if js_truthy(previous["output"]):
                update["input"] = [core]
            else:
                update["input"], insert = [*_spread(previous["input"]), core], False
        elif previous is None and role in OUTPUT_ROLES:
            update["output"] = [core]
        elif previous is None and role in INPUT_ROLES:
            update["input"] = [core]
        timestamp = event.get("timestamp")
        values = {key: value for key, value in shared.items() if value is not UNDEFINED} | update
        _first_problem(
            [
                _text_array_problem("tags", values.get("tags")),
                *(_jsonb_problem(column, values.get(column)) for column in ("metadata", "feedback")),
                *(_jsonb_problem(column, values.get(column)) for column in ("output", "input")),
                _not_null("created_at", timestamp) if insert else None,
            ]
        )
        if "tags" in values:
            values["tags"] = _as_text_array(values["tags"])
        if insert:
            values.setdefault("id", str(uuid.uuid4()))
            if values["id"] in self.runs:
                raise EventFailed(PKEY_VIOLATION)
            self._insert(
                **values, type="chat", created_at=timestamp, ended_at=timestamp, parent_run_id=thread["id"]
            )
            return
        assert previous is not None
        self._rename(previous, values.pop("id", previous["id"]))
        previous.update(values, ended_at=timestamp)

    def _rename(self, row: dict[str, Any], new_id: str) -> None:
        """``update run set id = $new``: children follow (on update cascade)."""
        if new_id == row["id"]:
            return
        if new_id in self.runs:
            raise EventFailed(PKEY_VIOLATION)
        old_id = row["id"]
        del self.runs[old_id]
        row["id"] = new_id
        self.runs[new_id] = row
        for child in self.runs.values():
            if child["parent_run_id"] == old_id:
                child["parent_run_id"] = new_id

    def _custom_event(self, event: dict[str, Any], user: Any) -> None:
        thread = self._upsert_thread(event, user)
        rid, timestamp = event.get("runId"), event.get("timestamp")
        _first_problem(
            [
                _uuid_problem(rid),
                _jsonb_problem("metadata", event.get("metadata")),
                _not_null("id", rid),
                _not_null("created_at", timestamp),
            ]
        )
        if pg_uuid(str(rid)) in self.runs:
            raise EventFailed(PKEY_VIOLATION)
        self._insert(
            id=pg_uuid(str(rid)),
            created_at=timestamp,
            ended_at=timestamp,
            type="custom-event",
            name=event.get("name"),
            parent_run_id=thread["id"],
            user=user,
            metadata=event.get("metadata"),
        )


def _json(value: Any) -> bytes:
    """``JSON.stringify``: compact, non-ASCII as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _message(status: int, message: str) -> Reply:
    return Reply(status, _json({"message": message}))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f'JSON Parse error: Unexpected identifier "{name}"')


def _parse_json(body: bytes) -> Any:
    """co-body in strict mode, then @hapi/bourne: an object or an array, no ``__proto__`` key.
    (The messages of the engine's own parser are not mirrored word for word.)"""
    text = body.decode("utf-8", "replace")
    if not text:
        return {}
    if not re.match(r"[\x20\x09\x0a\x0d]*[\[{]", text):
        raise ValueError("invalid JSON, only supports object and array")
    try:
        parsed = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise ValueError(f"JSON Parse error: {error.msg}") from None
    if "__proto__" in text and _has_proto(parsed):
        raise ValueError("Object contains forbidden prototype property")
    return parsed


def _has_proto(value: Any) -> bool:
    if isinstance(value, dict):
        return "__proto__" in value or any(_has_proto(v) for v in value.values())
    return isinstance(value, list) and any(_has_proto(v) for v in value)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLunary
    protocol_version = "HTTP/1.1"
    timeout = 10

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer (real servers set it too).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the default stderr access log."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        fake = self.fake
        with fake._lock:
            fake._in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
        try:
            self._handle("POST")
        finally:
            with fake._lock:
                fake._in_flight -= 1

    def _handle(self, method: str) -> None:
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = self._reply(method, body)
        with fake._lock:
            fake.requests.append(
                Request(self.path, dict(self.headers), reply.status, reply.events, time.monotonic())
            )
        if reply.status < 0:
            _reset(self.connection)
            self.close_connection = True
            return
        self._send(reply)

    def _reply(self, method: str, body: bytes) -> Reply:
        """The server's answer, with the next fault applied (faults hit the ingest route only)."""
        fake = self.fake
        fault = None
        if method == "POST" and urlsplit(self.path).path.rstrip("/") == INGEST_PATH:
            with fake._lock:
                fault = fake._next_fault()
        delay = fake.delay + (fault.delay if fault else 0.0)
        if delay:
            time.sleep(delay)
        if fault is not None and not fault.process:
            if fault.reset:
                return Reply(-1, b"")
            if fault.retry_after is not None:
                return fake.rate_limited(fault.retry_after)
            return Reply(fault.status or 500, fault.body or b"", dict(fault.headers))
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = fake.answer(method, self.path, headers, body)
        if fault is not None and fault.reset:
            return Reply(-1, b"", events=reply.events)
        return reply

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            headers = dict(reply.headers)
            self.send_header("Content-Type", headers.pop("Content-Type", JSON_CONTENT_TYPE))
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def _reset(conn: socket.socket) -> None:
    """Close with SO_LINGER 0 so the peer sees a TCP reset, not a clean close."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    except OSError:
        pass
