"""Turn anything an application passes through a trace into JSON, without ever raising.

Traced values are arbitrary user objects: pydantic models, dataclasses, numpy arrays,
generators, objects that refer to themselves. A tracer that raises or drops the event on
such input loses exactly the traces people need. So conversion degrades step by step
(structured form, then ``__dict__``, then ``repr``, then a type name) and always yields
something. Credentials found under key names that look secret are replaced at any depth,
and every field is capped in size with a visible marker, so one huge input cannot break
a batch.
"""

from __future__ import annotations

import base64
import codecs
import dataclasses
import datetime as _dt
import enum
import functools
import itertools
import json
import logging
import math
import re
import sys
import types
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from json.encoder import encode_basestring  # C, no escaping of non-ASCII
from pathlib import PurePath
from typing import Any

from lunatrace.core.json_text import converted_json, plain_json
from lunatrace.core.json_text import dumps as dumps  # re-exported: the compact form events are written in

logger = logging.getLogger("lunatrace")

REDACTED = "[lunatrace: redacted]"
MASKED = "[lunatrace: masked]"
MAX_DEPTH = 40
MAX_ITEMS = 2_000

# Mapping keys that name a credential end with one of these (``openaiApiKey``, ``DB_PWD``).
_SECRET_WORDS = (
    "apikey",
    "api_key",
    "secret",
    "secret_key",
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "private_key",
    "access_key",
    "signing_key",
    "encryption_key",
    "master_key",
    "dsn",
    "cookie",
    "token",
)
# Too short to match as an ending: a credential only as a whole part (``db_pass``, not ``bypass``).
_SECRET_PARTS = ("pass",)
_NOT_SECRET_TOKENS = re.compile(
    r"(max|num|prompt|completion|total|input|output|cached|reasoning|stop|eos|bos|pad|sep|"
    r"unk|mask|cls|first|last|next|special)_tokens?$"
)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key names a credential (``api_key``, ``openaiApiKey``, ``x-api-key``...).

    Usage counters such as ``max_tokens`` or ``prompt_tokens`` are not secrets.
    """
    if not isinstance(key, str) or not key:
        return False
    return _is_secret_name(key)


@functools.lru_cache(maxsize=4096)
def _is_secret_name(key: str) -> bool:
    """The check behind :func:`is_secret_key`, cached: the same few keys recur in every event."""
    norm = _CAMEL_BOUNDARY.sub("_", key).lower().replace("-", "_").replace(" ", "_")
    if _NOT_SECRET_TOKENS.search(norm):
        return False
    return (
        any(norm.endswith(word) for word in _SECRET_WORDS if word != "token")
        or norm == "token"
        or norm.endswith("_token")
        or any(norm == part or norm.endswith("_" + part) for part in _SECRET_PARTS)
    )


def _url_without_password(match: re.Match[str]) -> str:
    return f"://{match.group(1)}:{REDACTED}@"


def _basic_redacted(match: re.Match[str]) -> str:
    """A ``Basic`` credential is base64 of ``user:password``; anything else after the word
    (``basic idea``) is ordinary text and is kept."""
    token = match.group(1)
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return match.group(0)
    return REDACTED if ":" in decoded and decoded.isprintable() else match.group(0)


# Credentials recognised in any text, wherever they appear (docs/configuration.md#secrets
# lists them). Each comes with the shortest text it can match and the lower-case literals
# one of which every match contains: a pattern runs only on text that long holding one,
# and the JSON fast path looks for the same literals to know a field needs scrubbing.
# URL passwords go first, so the user name they keep is still scrubbed by the others.
_Replacement = str | Callable[[re.Match[str]], str]
_SHAPES: tuple[tuple[int, tuple[str, ...], re.Pattern[str], _Replacement], ...] = (
    (5, ("://",), re.compile(r"://([^\s/@:\"'<>`]*):[^\s/\"'<>`]*@"), _url_without_password),
    (19, ("sk-",), re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), REDACTED),
    (23, ("bearer",), re.compile(r"\b(?i:bearer)\s+[A-Za-z0-9\-._~+/]{16,}=*"), REDACTED),
    (10, ("basic",), re.compile(r"\b(?i:basic)\s+([A-Za-z0-9+/]{4,}={0,2})"), _basic_redacted),
    (
        24,
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
        REDACTED,
    ),
    (15, ("xox",), re.compile(r"\bxox[abeprsc]-[A-Za-z0-9\-]{10,}"), REDACTED),
    (20, ("akia", "asia"), re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    (33, ("hf_",), re.compile(r"\bhf_[A-Za-z0-9]{30,}"), REDACTED),
    (39, ("aiza",), re.compile(r"\bAIza[A-Za-z0-9_\-]{35}"), REDACTED),
    (
        26,
        ("private key",),
        # An unterminated key (a cut text) is removed to the end: its body is all secret.
        re.compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.DOTALL,
        ),
        REDACTED,
    ),
)
_SHAPE_LITERALS = tuple(literal for _, literals, _, _ in _SHAPES for literal in literals)
# (shortest match, literal), shortest first: a short string is checked for few of them.
_SHAPE_CHECKS = tuple(sorted((size, literal) for size, literals, _, _ in _SHAPES for literal in literals))


# Texts known to come out of scrubbing unchanged (no lone surrogate, no credential shape),
# so that a text seen again and again (a conversation's history, a system prompt, the same
# message in three events, retrieved documents) is scanned once. Bounded by entries and by
# characters; when full, it starts again.
_CLEAN_MAX_ENTRIES = 16_384
_CLEAN_MAX_CHARS = 4_000_000
_CLEAN_MAX_TEXT = 100_000  # a longer text is neither looked up (hashed) nor kept alive
_SHORTEST_SCRUBBED = _SHAPE_CHECKS[0][0]  # below it, only a lone surrogate (not ASCII) changes a text


class _CleanTexts:
    __slots__ = ("chars", "texts")

    def __init__(self) -> None:
        self.texts: dict[str, None] = {}
        self.chars = 0

    def remember(self, text: str) -> None:
        if len(self.texts) >= _CLEAN_MAX_ENTRIES or self.chars + len(text) > _CLEAN_MAX_CHARS:
            self.texts = {}  # a new dict, not clear(): another thread may be reading the old one
            self.chars = 0
        self.texts[text] = None
        self.chars += len(text)


_clean_texts = _CleanTexts()


def scrub_text(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """Remove credentials (see :data:`_SHAPES`) and the configured secrets from text.

    Lone surrogates (from ``surrogateescape`` decoding) are replaced too: they cannot be
    encoded as UTF-8, so they would break the JSON body of the whole batch.
    """
    if len(text) > _CLEAN_MAX_TEXT:
        return _scrubbed(text, extra_secrets)
    if text in _clean_texts.texts:
        for secret in extra_secrets:
            if secret and secret in text:
                return _scrubbed(text, extra_secrets)
        return text
    scrubbed = _scrubbed(text, extra_secrets)
    if len(text) >= _SHORTEST_SCRUBBED and scrubbed == text:
        _clean_texts.remember(text)  # unchanged: nor would it be without the secrets
    return scrubbed


def _scrubbed(text: str, extra_secrets: tuple[str, ...]) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
    for secret in extra_secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    size = len(text)
    if size < _SHAPE_CHECKS[0][0]:
        return text
    lowered = text.lower()
    for shortest, literal in _SHAPE_CHECKS:
        if size < shortest:
            break
        if literal in lowered:
            return _scrub_shapes(text, lowered)
    return text


def _scrub_shapes(text: str, lowered: str) -> str:
    for _, literals, pattern, replacement in _SHAPES:
        if any(literal in lowered for literal in literals):
            text = pattern.sub(replacement, text)
    return text


# How far past a cut a text is still scrubbed, so that a credential beginning before the
# cut is recognised whole and none of it is kept.
_SCRUB_MARGIN = 1_000


def shorten_limit(max_bytes: int) -> int:
    """The length, marker included, to which a field over ``max_bytes`` cuts its long strings."""
    return max(64, max_bytes // 8)


def _shortened(text: str, limit: int, beyond: int = 0) -> str:
    """``text`` in at most ``limit`` characters, the truncation marker included.

    ``beyond``: characters of the original that ``text`` no longer holds (it may be only
    the beginning of it), counted in the marker. A string already cut is left as it is.
    """
    total = len(text) + beyond
    if total <= limit:
        return text
    keep = max(0, limit - len(truncation_marker(total)))
    return text[:keep] + truncation_marker(total - keep)


def cut_text(value: str, limit: int, secrets: tuple[str, ...] = (), beyond: int = 0) -> str:
    """A long text cut to ``limit`` characters (marker included) before it is scrubbed.

    Scrubbing or copying a 50 MB string to keep its first few thousand characters is what
    made one huge input cost several times its size: only the kept part, and a margin after
    it, are looked at.
    """
    window = value[: limit + _SCRUB_MARGIN]
    return _shortened(scrub_text(window, secrets), limit, beyond + len(value) - len(window))


def _bounded_text(value: str, room: int, limit: int, secrets: tuple[str, ...]) -> str:
    """``value`` scrubbed, or, when its field certainly ends up over its cap (``value`` alone
    needs more than the ``room`` bytes of JSON left) and cuts it to ``limit``, only that part."""
    if len(value) + 2 > room and len(value) > limit:
        return cut_text(value, limit, secrets)
    return scrub_text(value, secrets)


class _Encoder:
    """One conversion pass; holds the cycle guard for that pass only.

    It counts what it produced (nodes, characters of strings and keys). From above, that
    bounds the JSON size without encoding it (:meth:`max_json_bytes`): most fields are far
    below the size cap, and for them the exact measurement is skipped. From below
    (:meth:`_min_json_bytes`), it tells when a field with a ``max_bytes`` cap is certainly
    over it: from then on a long string is cut before it is scrubbed or copied, and no
    further item is converted, only counted (``<N more items>``), as the cap would drop
    them anyway (:attr:`stopped`). So a huge input costs memory in proportion to the cap,
    not to its size.
    """

    def __init__(self, secrets: tuple[str, ...], max_bytes: int | None = None) -> None:
        self._active: set[int] = set()
        self._secrets = secrets
        self.nodes = 0
        self.chars = 0
        self.floats = 0  # finite floats: at least three characters each ("0.0")
        self.stopped = False  # items were left out: the field was already over its cap
        self._max_bytes = sys.maxsize if max_bytes is None else max_bytes
        self._limit = shorten_limit(self._max_bytes)

    def max_json_bytes(self) -> int:
        """An upper bound on the UTF-8 JSON size of everything converted so far.

        A character takes at most 6 bytes in JSON (six-character escapes; UTF-8 needs at
        most 4); a node adds at most 32 (a number's digits, quotes, separators).
        """
        return 6 * self.chars + 32 * self.nodes

    def _min_json_bytes(self) -> int:
        """A lower bound on the same: a character is at least one byte, a node at least one,
        and every node but the outermost is an item, all but one per container followed by a
        separator (containers' brackets make up for those); a float takes two characters
        more. Exact only because every node is counted once: conversions that pass a value
        on (a ``Deferred``, an object's plain form) go through ``_convert``, and keys'
        conversions are not counted."""
        return self.chars + 2 * self.nodes + 2 * self.floats - 1

    def convert(self, value: Any, depth: int = 0) -> Any:
        try:
            result = self._convert(value, depth)
        except Exception as exc:  # noqa: BLE001 - user code (a property, model_dump, a Deferred) may raise anything
            result = f"<unserializable {type(value).__name__}: {type(exc).__name__}>"
        self.nodes += 1
        if type(result) is str:
            self.chars += len(result)
        return result

    def _text(self, value: str) -> str:
        return _bounded_text(value, self._max_bytes - self._min_json_bytes(), self._limit, self._secrets)

    def _full(self) -> bool:
        """Whether the field is already over its cap: what comes next would be cut off."""
        if self._min_json_bytes() > self._max_bytes:
            self.stopped = True
        return self.stopped

    def _convert(self, value: Any, depth: int) -> Any:
        cls = type(value)
        # Exact-type fast paths for what traced payloads are mostly made of; subclasses
        # and everything else take the general path below.
        if cls is str:
            return self._text(value)
        if cls is dict or cls is list:
            if depth >= MAX_DEPTH:
                return f"<max depth: {cls.__name__}>"
            return self._container(value, depth)
        if cls is Deferred:
            return self._convert(value.resolve(), depth + 1)
        if value is None or isinstance(value, bool | int):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
                return str(value)
            return value
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                return str(value)
            self.floats += 1
            return value
        if depth >= MAX_DEPTH:
            return f"<max depth: {type(value).__name__}>"
        if isinstance(value, Mapping | list | tuple | set | frozenset):
            return self._container(value, depth)
        return self._object(value, depth)

    def _container(self, value: Any, depth: int) -> Any:
        marker = id(value)
        if marker in self._active:
            return f"<cycle: {type(value).__name__}>"
        self._active.add(marker)
        try:
            if type(value) is dict or isinstance(value, Mapping):
                return self._mapping(value, depth)
            items = list(itertools.islice(value, MAX_ITEMS))  # never copy a huge container
            if isinstance(value, set | frozenset):
                items = sorted(items, key=_safe_repr)  # a stable order for sets
            return self._items(items, len(value), depth)
        finally:
            self._active.discard(marker)

    def _items(self, items: list[Any], total: int, depth: int) -> list[Any]:
        """The converted ``items`` (the first of ``total``), then a count of those left out."""
        out = []
        for item in items:
            if self._full():
                break
            out.append(self.convert(item, depth + 1))
        if total > len(out):
            out.append(self.convert(f"<{total - len(out)} more items>"))
        return out

    def _key_text(self, key: Any, depth: int) -> str:
        """A non-string mapping key as JSON spells it (``true``, ``null``, ``1.5``), converted
        first; it is not a node of the field, so what its conversion counted is not kept."""
        counts = self.nodes, self.chars, self.floats
        converted = self.convert(key, depth)
        self.nodes, self.chars, self.floats = counts
        if converted is None or isinstance(converted, bool):
            return dumps(converted)
        return str(converted)

    def _redacted(self) -> str:
        self.nodes += 1
        self.chars += len(REDACTED)
        return REDACTED

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if type(value) is not dict and isinstance(value, dict) and not value:
            return out  # as the C JSON encoder has it: an empty dict's ``items`` is not called
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS or self._full():
                out["<truncated>"] = self.convert(f"{len(value) - index} more keys")
                break
            name = self._text(key if isinstance(key, str) else self._key_text(key, depth + 1))
            self.chars += len(name)
            out[name] = self._redacted() if is_secret_key(name) else self.convert(item, depth + 1)
        return out

    def _object(self, value: Any, depth: int) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            return self._bytes(value)
        rows = _array_rows(value)
        if rows is not None:
            return self._items(rows[0], rows[1], depth)
        simple = _simple_value(value)
        if simple is not _NO_VALUE:
            # numpy's tolist(), Decimal and enum values can hold NaN, huge numbers or objects.
            return self._convert(simple, depth + 1)
        if isinstance(value, types.GeneratorType | types.AsyncGeneratorType):
            return f"<{type(value).__name__}>"
        structured = _structured_form(value)
        if structured is not _NO_VALUE:
            marker = id(value)
            if marker in self._active:
                return f"<cycle: {type(value).__name__}>"
            self._active.add(marker)
            try:
                return self._convert(structured, depth + 1)
            finally:
                self._active.discard(marker)
        return self._text(_safe_repr(value))

    def _bytes(self, value: bytes | bytearray | memoryview) -> str:
        """Bytes as their UTF-8 text, else as ``base64:``. Of bytes that cannot fit the
        field's cap, only the part it keeps is copied and decoded."""
        size = value.nbytes if isinstance(value, memoryview) else len(value)
        room = self._max_bytes - self._min_json_bytes()
        if size + 2 <= room or size <= self._limit:
            return self._text(_bytes_text(bytes(value), final=True))
        window = _first_bytes(value, 4 * (self._limit + _SCRUB_MARGIN))  # 4: UTF-8's longest character
        return cut_text(_bytes_text(window, final=False), self._limit, self._secrets, size - len(window))


def _first_bytes(value: bytes | bytearray | memoryview, count: int) -> bytes:
    if isinstance(value, memoryview):
        try:
            value = value.cast("B")  # slice bytes, not items
        except TypeError:  # not C-contiguous: only a copy can be sliced
            value = value.tobytes()
    return bytes(value[:count])


def _bytes_text(raw: bytes, *, final: bool) -> str:
    """``raw`` decoded as UTF-8 (``final=False``: it is only the beginning, and may end in
    the middle of a character), else base64 of its first 48,000 bytes."""
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(raw, final=final)
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw[:48_000]).decode("ascii")


def _array_rows(value: Any) -> tuple[list[Any], int] | None:
    """A numpy array's first ``MAX_ITEMS`` entries along its first axis, and its length.

    Only those are converted: ``tolist()`` of the whole array turned a 76 MB array into
    several hundred MB of Python floats, to keep 2,000 of them. A row of a 2-D array is an
    array itself, converted the same way (so the field's cap can stop it early).
    """
    module = type(value).__module__
    if module != "numpy" and not module.startswith("numpy."):
        return None
    ndim = getattr(value, "ndim", 0)
    if not isinstance(ndim, int) or ndim < 1:
        return None  # a scalar: ``_simple_value`` takes its ``tolist()``
    head = value[:MAX_ITEMS]
    rows = head.tolist() if ndim == 1 else list(head)
    if ndim > 1 and rows and getattr(rows[0], "ndim", 0) >= ndim:
        rows = head.tolist()  # np.matrix: its rows stay 2-D
    return rows, len(value)


_NO_VALUE = object()


class Deferred:
    """A value whose conversion to plain data is postponed to the background worker.

    Integrations wrap framework objects (messages, documents) with the function that
    turns them into payload data; the hot path then only allocates this wrapper, and the
    serializer runs ``convert(value)`` when it reaches it, off the application's thread.
    A ``convert`` that raises degrades like any other unserializable value.

    The result is kept: the same value can be converted for two events (an llm run's
    prompt, sent with its start, is counted again for the token estimate of its end).
    """

    __slots__ = ("_result", "convert", "value")

    def __init__(self, convert: Callable[[Any], Any], value: Any) -> None:
        self.convert = convert
        self.value = value
        self._result: Any = _NO_VALUE

    def resolve(self) -> Any:
        result = self._result
        if result is _NO_VALUE:
            result = self._result = self.convert(self.value)
        return result

    def __repr__(self) -> str:
        return f"Deferred({getattr(self.convert, '__name__', 'convert')})"


def _simple_value(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc)
            return value.isoformat().replace("+00:00", "Z")
        return value.isoformat()
    if isinstance(value, _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else str(value)
    if isinstance(value, enum.Enum):
        return value.value if isinstance(value.value, str | int | float) else value.name
    type_name = type(value).__name__
    if type_name in {"SecretStr", "SecretBytes"}:
        return "**********"
    module = type(value).__module__
    if module == "numpy" or module.startswith("numpy."):
        tolist = getattr(value, "tolist", None)
        if callable(tolist):
            return tolist()
    return _NO_VALUE


def _structured_form(value: Any) -> Any:
    """The richest plain-data view of an object we can get without running user logic twice."""
    if isinstance(value, type):
        return _NO_VALUE
    for method in ("model_dump", "dict"):  # pydantic v2, then v1
        dump = getattr(value, method, None)
        if callable(dump) and hasattr(value, "__fields__" if method == "dict" else "model_fields"):
            try:
                return dump()
            except Exception:  # noqa: BLE001 - a user's model_dump may raise anything: try the next form
                continue
    if dataclasses.is_dataclass(value):
        return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict) and attributes:
        return {k: v for k, v in attributes.items() if not k.startswith("__")}
    return _NO_VALUE


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a user's __repr__ may raise anything: the type name stands in
        return f"<{type(value).__name__}>"
    return text if len(text) <= 10_000 else text[:10_000] + "…"


def to_jsonable(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """Convert ``value`` to JSON-ready data; never raises, redacts secret-looking keys."""
    return _Encoder(secrets).convert(value)


def truncation_marker(dropped: int, *, at_least: bool = False) -> str:
    return f"…[lunatrace: truncated {'at least ' if at_least else ''}{dropped} characters]"


def cap_size(value: Any, max_bytes: int, *, complete: bool = True, floats: bool = True) -> Any:
    """Keep JSON-ready ``value`` within ``max_bytes`` of JSON, marking what was cut.

    Long strings are shortened first, keeping the structure readable; if the structure
    itself is still too large it is replaced by a truncated JSON preview string.
    ``complete=False``: ``value`` is only the beginning of the field (its conversion
    stopped, see :class:`_Encoder`), so the preview's count is a lower bound.
    ``floats=False``: ``value`` holds no float, so a faster encoder measures it.
    """
    text = converted_json(value, floats)
    if len(text.encode("utf-8")) <= max_bytes:
        return value
    shortened = _shorten_strings(value, shorten_limit(max_bytes))
    text = converted_json(shortened, floats)
    if len(text.encode("utf-8")) <= max_bytes:
        return shortened
    budget = max(0, max_bytes - 80)
    preview = text.encode("utf-8")[:budget].decode("utf-8", "ignore")
    marker = truncation_marker(len(text), at_least=not complete)
    # json.dumps of the preview may escape characters and grow; shrink until it fits.
    while preview and len(json.dumps(preview + marker)) > max_bytes:
        preview = preview[: len(preview) * 3 // 4]
    return preview + truncation_marker(len(text) - len(preview), at_least=not complete)


def _shorten_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return _shortened(value, limit)
    if isinstance(value, list):
        return [_shorten_strings(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: _shorten_strings(v, limit) for k, v in value.items()}
    return value


def _resolved(value: Any) -> Any:
    """The fast path's ``default`` hook: what a ``Deferred`` resolves to (the walk before
    has resolved it already, so this reads the kept result); anything else is refused."""
    if type(value) is Deferred:
        return value.resolve()
    raise TypeError("not plain data")


class _PlainCheck:
    """Whether the general conversion would leave a value exactly as it is, decided by one
    walk of the value (no heuristics on its JSON): exact built-in types only (dict, list,
    tuple, str, int, float, bool, ``None``, ``Deferred`` resolved on the way), no container
    at :data:`MAX_DEPTH` or holding more than :data:`MAX_ITEMS`, string keys none of which
    names a secret, integers within 64 bits, finite floats, and strings that ``scrub_text``
    leaves as they are. ``left`` counts down a lower bound of the JSON's size from the cap,
    so a field certainly over it is given up on at once. ``tiny_floats``: a float the JSON
    encoders write differently was seen (see :func:`~lunatrace.core.json_text.plain_json`).
    """

    __slots__ = ("clean", "left", "tiny_floats")

    def __init__(self, max_bytes: int) -> None:
        self.left = max_bytes
        self.tiny_floats = False
        self.clean = _clean_texts.texts

    def text(self, value: str) -> bool:
        self.left -= len(value) + 3  # quotes and a separator
        if self.left < 0:
            return False  # over the cap: the general path cuts it before scrubbing
        return (
            (len(value) < _SHORTEST_SCRUBBED and value.isascii())
            or value in self.clean
            or scrub_text(value) == value
        )

    def fits(self, value: Any, depth: int) -> bool:
        cls = type(value)
        if cls is str:
            return self.text(value)
        if cls is dict:
            if depth >= MAX_DEPTH or len(value) > MAX_ITEMS:
                return False
            self.left -= 2
            for key, item in value.items():
                if type(key) is not str or _is_secret_name(key) or not self.text(key):
                    return False
                if not (self.text(item) if type(item) is str else self.fits(item, depth + 1)):
                    return False
            return self.left >= 0
        if cls is list or cls is tuple:
            if depth >= MAX_DEPTH or len(value) > MAX_ITEMS:
                return False
            self.left -= 2
            for item in value:
                if not (self.text(item) if type(item) is str else self.fits(item, depth + 1)):
                    return False
            return self.left >= 0
        self.left -= 2
        if cls is int:
            return bool(-(2**63) <= value <= 2**63)
        if cls is float:
            if value - value != 0.0:  # NaN or infinity: the general path writes them as strings
                return False
            if value and -1e-4 < value < 1e-4:
                self.tiny_floats = True
            return True
        if value is None or cls is bool:
            return True
        if cls is Deferred:
            try:
                resolved = value.resolve()
            except Exception:  # noqa: BLE001 - the integration's conversion of a user object: the general path degrades it
                return False
            return self.fits(resolved, depth + 1)
        return False


_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
SHORT_TEXT = 200
SHORT_TEXTS = 1_024


class FieldEncoder:
    """Converts one event field: JSON-ready, secrets scrubbed, user mask applied, size-capped.

    The mask hook fails closed: if it raises, the field is replaced by a marker, and the
    failure is logged once per encoder so a broken hook cannot flood the logs.

    Most fields are plain data (strings, numbers, lists and dicts of them) with nothing to
    scrub, well under the size cap. For those :meth:`encode_json` checks in one walk that
    the general conversion would leave the value as it is (:class:`_PlainCheck`) and has
    orjson write it; only a value the conversion would change is converted in Python.
    Both paths give the same JSON, byte for byte; the fast one is several times cheaper
    (tens of times on long texts), and the worker runs it for every payload of every
    event. Both bound their memory by the cap: a huge input is cut before it is
    converted, never copied whole.
    """

    def __init__(
        self,
        max_bytes: int,
        mask: Callable[[Any], Any] | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.max_bytes = max_bytes
        self.mask = mask
        self.secrets = tuple(s for s in secrets if s)
        # How each secret appears inside JSON text (escaped), to look for it there.
        self._secrets_in_json = tuple(encode_basestring(s)[1:-1] for s in self.secrets)
        self._limit = shorten_limit(max_bytes)
        self._mask_failed_logged = False
        self._short_texts: dict[str, str] = {}  # see ``text_json``

    def encode_json(self, value: Any, *, masked: bool = True) -> str | None:
        """The field as JSON text (``None`` when it converts to nothing): :meth:`encode`,
        then ``dumps``, by the fast path when it gives the same result."""
        if type(value) is not str and (self.mask is None or not masked):  # strings: ``encode``'s own
            text = self._plain_json(value)
            if text is not None:
                return None if text == "null" else text
        data, floats = self._converted(value, masked)
        if data is None:
            return None
        return encode_basestring(data) if type(data) is str else converted_json(data, floats)

    def _plain_json(self, value: Any) -> str | None:
        """``value`` as JSON if the general conversion would leave it as it is, else ``None``.

        Decided exactly by a walk of the value (:class:`_PlainCheck`), then written by a
        compiled encoder; only the configured secrets are looked for in the text (as JSON
        escapes them). A field far over the cap (a huge string, a long list) is given up
        on during the walk, before anything is encoded.
        """
        check = _PlainCheck(self.max_bytes)
        if not check.fits(value, 0):
            return None
        try:
            text, size = plain_json(value, _resolved, check.tiny_floats)
        except Exception:  # noqa: BLE001 - a lone surrogate (scrubbed by the general path), or a value changed meanwhile
            return None
        if size > self.max_bytes:
            return None
        for secret in self._secrets_in_json:
            if secret in text:
                return None
        return text

    def keeps_flat(self, value: dict[Any, Any]) -> bool:
        """Whether :meth:`encode` would return ``value`` itself: a dict of scalars (strings,
        numbers, booleans, ``None``) that the conversion leaves as it is (see
        :class:`_PlainCheck`), holding no configured secret, with no mask to apply, and
        certainly within the cap. Most metadata is one; it is read back as data (to be
        flattened), so the JSON fast path does not apply to it."""
        if self.mask is not None or len(value) > MAX_ITEMS:
            return False
        secrets = self.secrets
        bound = 2  # an upper bound of its JSON, as ``_Encoder.max_json_bytes`` counts
        for key, item in value.items():
            cls = type(item)
            if cls not in _SCALAR_TYPES or type(key) is not str:
                return False
            if cls is str:
                bound += 6 * (len(key) + len(item)) + 6
                if secrets and any(secret in item or secret in key for secret in secrets):
                    return False
            else:
                bound += 6 * len(key) + 36
                if secrets and any(secret in key for secret in secrets):
                    return False
        return bound <= self.max_bytes and _PlainCheck(self.max_bytes).fits(value, 0)

    def encode_text(self, value: str) -> str:
        """A string field (a run name, a tag, a user id, a payload string): scrubbed and
        capped like any field, never masked."""
        text = _bounded_text(value, self.max_bytes, self._limit, self.secrets)
        return text if 6 * len(text) + 32 <= self.max_bytes else str(cap_size(text, self.max_bytes))

    def text_json(self, value: str) -> str:
        """:meth:`encode_text` as JSON. Short texts (run names, user ids: the same few in
        every trace) are remembered, :data:`SHORT_TEXTS` of them at most, then forgotten
        all at once: the result depends only on the text and this encoder's settings."""
        if len(value) > SHORT_TEXT:
            return encode_basestring(self.encode_text(value))
        text = self._short_texts.get(value)
        if text is None:
            text = encode_basestring(self.encode_text(value))
            if len(self._short_texts) >= SHORT_TEXTS:
                self._short_texts = {}  # a new dict, not clear(): another thread may be reading the old one
            self._short_texts[value] = text
        return text

    def encode_strings(self, values: Iterable[str], total: int) -> list[str]:
        """A list of strings (tags): each as :meth:`encode_text` has it, without duplicates,
        and as many as fit in the cap; the others (of ``total``) are counted by a last
        ``<N more items>``, as a payload list's are."""
        out: dict[str, None] = {}
        size = 2 + 32  # the brackets, and room for the count
        kept = 0
        for value in values:
            text = self.encode_text(value)
            if text not in out:
                size += len(encode_basestring(text).encode("utf-8")) + 1
                if size > self.max_bytes:
                    break
                out[text] = None
            kept += 1
        if total > kept:
            out[f"<{total - kept} more items>"] = None
        return list(out)

    def encode(self, value: Any, *, masked: bool = True) -> Any:
        return self._converted(value, masked)[0]

    def _converted(self, value: Any, masked: bool) -> tuple[Any, bool]:
        """:meth:`encode`'s result, and whether it may hold a float (the JSON encoders
        differ on none of the rest: see :func:`~lunatrace.core.json_text.converted_json`)."""
        if (type(value) is str or isinstance(value, str)) and (self.mask is None or not masked):
            # The commonest field: what the general path would do, which reads a string's
            # content whatever its class (LangChain's outputs are a ``str`` subclass).
            return self.encode_text(str.__str__(value)), False
        encoder = _Encoder(self.secrets, self.max_bytes)
        data = encoder.convert(value)
        complete = not encoder.stopped
        if masked and self.mask is not None and data is not None:  # a deferred value can resolve to nothing
            try:
                encoder = _Encoder(self.secrets, self.max_bytes)
                data = encoder.convert(self.mask(data))
            # Not the guard: its log line shows the exception's text, which may hold the very
            # data the mask is there to hide. Broad: the hook is the user's code.
            except Exception as exc:  # noqa: BLE001 - fail closed
                if not self._mask_failed_logged:
                    self._mask_failed_logged = True
                    logger.error(
                        "lunatrace: the mask hook raised %s; affected fields are fully masked",
                        type(exc).__name__,
                    )
                return MASKED, False
            complete = complete and not encoder.stopped
        floats = encoder.floats > 0
        if encoder.max_json_bytes() <= self.max_bytes:
            return data, floats  # certainly within the cap: no need to measure it exactly
        return cap_size(data, self.max_bytes, complete=complete, floats=floats), floats
