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
import dataclasses
import datetime as _dt
import enum
import functools
import itertools
import json
import logging
import math
import re
import types
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from json.encoder import encode_basestring  # C, no escaping of non-ASCII
from pathlib import PurePath
from typing import Any

logger = logging.getLogger("lunatrace")

REDACTED = "[lunatrace: redacted]"
MASKED = "[lunatrace: masked]"
MAX_DEPTH = 40
MAX_ITEMS = 2_000

_SECRET_WORDS = (
    "apikey",
    "api_key",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "authorization",
    "credential",
    "credentials",
    "private_key",
    "access_key",
    "cookie",
    "token",
)
_NOT_SECRET_TOKENS = re.compile(
    r"(max|num|prompt|completion|total|input|output|cached|reasoning|stop|eos|bos|pad|sep|"
    r"unk|mask|cls|first|last|next|special)_tokens?$"
)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_KEY_PREFIXES = ("sk-", "Bearer")  # what the values below start with
_KEY_LIKE_VALUE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{16,}|Bearer\s+[A-Za-z0-9._\-]{16,})")


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
        any(
            norm == word or norm.endswith("_" + word) or norm.endswith(word)
            for word in _SECRET_WORDS
            if word != "token"
        )
        or norm == "token"
        or norm.endswith("_token")
    )


def scrub_text(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """Remove values that look like provider keys, and the configured secrets, from text.

    Lone surrogates (from ``surrogateescape`` decoding) are replaced too: they cannot be
    encoded as UTF-8, so they would break the JSON body of the whole batch.
    """
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
    for secret in extra_secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    if any(prefix in text for prefix in _KEY_PREFIXES):
        text = _KEY_LIKE_VALUE.sub(REDACTED, text)
    return text


class _Encoder:
    """One conversion pass; holds the cycle guard for that pass only.

    It also counts what it produced (nodes, characters of strings and keys) so that
    :meth:`max_json_bytes` can bound the JSON size without encoding it: most fields are
    far below the size cap, and for them the exact measurement is skipped.
    """

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._active: set[int] = set()
        self._secrets = secrets
        self.nodes = 0
        self.chars = 0

    def max_json_bytes(self) -> int:
        """An upper bound on the UTF-8 JSON size of everything converted so far.

        A character takes at most 6 bytes in JSON (six-character escapes; UTF-8 needs at
        most 4); a node adds at most 32 (a number's digits, quotes, separators).
        """
        return 6 * self.chars + 32 * self.nodes

    def convert(self, value: Any, depth: int = 0) -> Any:
        try:
            result = self._convert(value, depth)
        except Exception as exc:  # noqa: BLE001 - the whole point is to never raise
            result = f"<unserializable {type(value).__name__}: {type(exc).__name__}>"
        self.nodes += 1
        if type(result) is str:
            self.chars += len(result)
        return result

    def _convert(self, value: Any, depth: int) -> Any:
        cls = type(value)
        # Exact-type fast paths for what traced payloads are mostly made of; subclasses
        # and everything else take the general path below.
        if cls is str:
            return scrub_text(value, self._secrets)
        if cls is dict or cls is list:
            if depth >= MAX_DEPTH:
                return f"<max depth: {cls.__name__}>"
            return self._container(value, depth)
        if cls is Deferred:
            return self.convert(value.resolve(), depth + 1)
        if value is None or isinstance(value, bool | int):
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
                return str(value)
            return value
        if isinstance(value, str):
            return scrub_text(value, self._secrets)
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
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
            total = len(value)
            items = list(itertools.islice(value, MAX_ITEMS))  # never copy a huge container
            if isinstance(value, set | frozenset):
                items = sorted(items, key=_safe_repr)  # a stable order for sets
            out = [self.convert(v, depth + 1) for v in items]
            if total > MAX_ITEMS:
                out.append(self.convert(f"<{total - MAX_ITEMS} more items>"))
            return out
        finally:
            self._active.discard(marker)

    def _redacted(self) -> str:
        self.nodes += 1
        self.chars += len(REDACTED)
        return REDACTED

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if type(value) is not dict and isinstance(value, dict) and not value:
            return out  # as the C JSON encoder has it: an empty dict's ``items`` is not called
        for index, (key, item) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["<truncated>"] = self.convert(f"{len(value) - MAX_ITEMS} more keys")
                break
            name = scrub_text(
                key if isinstance(key, str) else _key_text(self.convert(key, depth + 1)), self._secrets
            )
            self.chars += len(name)
            out[name] = self._redacted() if is_secret_key(name) else self.convert(item, depth + 1)
        return out

    def _object(self, value: Any, depth: int) -> Any:
        simple = _simple_value(value)
        if simple is not _NO_VALUE:
            # numpy's tolist(), Decimal and enum values can hold NaN, huge numbers or objects.
            return self.convert(simple, depth + 1)
        if isinstance(value, types.GeneratorType | types.AsyncGeneratorType):
            return f"<{type(value).__name__}>"
        structured = _structured_form(value)
        if structured is not _NO_VALUE:
            marker = id(value)
            if marker in self._active:
                return f"<cycle: {type(value).__name__}>"
            self._active.add(marker)
            try:
                return self.convert(structured, depth + 1)
            finally:
                self._active.discard(marker)
        return scrub_text(_safe_repr(value), self._secrets)


def _key_text(key: Any) -> str:
    """A converted non-string mapping key as JSON spells it (``true``, ``null``, ``1.5``)."""
    if key is None or isinstance(key, bool):
        return _COMPACT.encode(key)
    return str(key)


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
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw[:48_000]).decode("ascii")
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
            except Exception:  # noqa: BLE001 - fall through to the next strategy
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
    except Exception:  # noqa: BLE001
        return f"<{type(value).__name__}>"
    return text if len(text) <= 10_000 else text[:10_000] + "…"


def to_jsonable(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """Convert ``value`` to JSON-ready data; never raises, redacts secret-looking keys."""
    return _Encoder(secrets).convert(value)


def truncation_marker(dropped: int) -> str:
    return f"…[lunatrace: truncated {dropped} characters]"


def cap_size(value: Any, max_bytes: int) -> Any:
    """Keep JSON-ready ``value`` within ``max_bytes`` of JSON, marking what was cut.

    Long strings are shortened first, keeping the structure readable; if the structure
    itself is still too large it is replaced by a truncated JSON preview string.
    """
    text = dumps(value)
    if len(text.encode("utf-8")) <= max_bytes:
        return value
    shortened = _shorten_strings(value, max(64, max_bytes // 8))
    text = dumps(shortened)
    if len(text.encode("utf-8")) <= max_bytes:
        return shortened
    budget = max(0, max_bytes - 80)
    preview = text.encode("utf-8")[:budget].decode("utf-8", "ignore")
    # json.dumps of the preview may escape characters and grow; shrink until it fits.
    while preview and len(json.dumps(preview + truncation_marker(len(text)))) > max_bytes:
        preview = preview[: len(preview) * 3 // 4]
    return preview + truncation_marker(len(text) - len(preview))


def _shorten_strings(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        if len(value) > limit:
            return value[:limit] + truncation_marker(len(value) - limit)
        return value
    if isinstance(value, list):
        return [_shorten_strings(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: _shorten_strings(v, limit) for k, v in value.items()}
    return value


def dumps(value: Any) -> str:
    """Compact JSON for JSON-ready data (``allow_nan`` off: non-finite floats are strings)."""
    return _COMPACT.encode(value)


# One encoder for every call: ``json.dumps`` with options builds a new one each time.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# The fast path's check for anything the general conversion could change, done on the
# UTF-8 JSON with letters folded to lower case and digits to ``0``. Its needles come from
# the general path's own rules: a secret key name always contains one of the secret words
# (a word's last ``_`` part: ``apiKey`` holds ``key``, not ``api_key``), ``scrub_text``
# only looks further when a key-like prefix occurs, and integers of 19 digits or more
# (those above ``2**63``) become strings. Conservative: a match only sends the field down
# the general path.
_FOLD = bytes((c + 32 if 65 <= c <= 90 else 48 if 48 <= c <= 57 else c) for c in range(256))


def _needles() -> tuple[bytes, ...]:
    words = {word.rsplit("_", 1)[-1] for word in _SECRET_WORDS} | {p.lower() for p in _KEY_PREFIXES}
    # A word containing another is found through it ("credentials" through "credential").
    kept = [w for w in words if not any(other != w and other in w for other in words)]
    return (*sorted(w.encode() for w in kept), b"0" * 19)


_NEEDLES = _needles()


def _may_need_conversion(folded: bytes) -> bool:
    for needle in _NEEDLES:  # noqa: SIM110 - ``any()`` over a generator costs a frame per field
        if needle in folded:
            return True
    return False


def _c_json(value: Any, default: Callable[[Any], Any]) -> str:
    """Compact JSON (non-ASCII kept, NaN refused) from CPython's C encoder called directly:
    ``JSONEncoder.encode`` adds two Python frames and an object per call to the same thing."""
    encode = _make_c_encoder({}, default, encode_basestring, None, ":", ",", False, False, False)
    return "".join(encode(value, 0))


def _python_json(value: Any, default: Callable[[Any], Any]) -> str:
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default)
    return encoder.encode(value)


def _pick_json_encoder() -> Callable[[Any, Callable[[Any], Any]], str]:
    """:func:`_c_json` where this interpreter's C encoder behaves as expected, else the
    standard ``JSONEncoder`` (same output)."""
    sample = {"a": [1, 2.5, None, True, "é\n"], "b": {}}
    try:
        if _make_c_encoder is not None and _c_json(sample, repr) == _python_json(sample, repr):
            return _c_json
    except Exception:  # noqa: BLE001 - another C signature: use the standard path
        pass
    return _python_json


_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_plain_json_text = _pick_json_encoder()


class _DeferredResolver:
    """The fast path's ``default`` hook: resolves ``Deferred`` values, refuses anything else."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, value: Any) -> Any:
        if type(value) is Deferred:
            self.count += 1
            return value.resolve()
        raise TypeError("not plain data")


class FieldEncoder:
    """Converts one event field: JSON-ready, secrets scrubbed, user mask applied, size-capped.

    The mask hook fails closed: if it raises, the field is replaced by a marker, and the
    failure is logged once per encoder so a broken hook cannot flood the logs.

    Most fields are plain data (strings, numbers, lists and dicts of them) with nothing to
    scrub, well under the size cap. For those :meth:`encode_json` lets the C JSON encoder
    do the whole walk and checks its output instead, and only when the output shows that
    the general conversion could change something (see :data:`_NEEDLES`) does it
    convert in Python. Both paths give the same JSON; the fast one is several times
    cheaper, and the worker runs it for every payload of every event.
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
        self._secrets_in_json = tuple(_COMPACT.encode(s)[1:-1] for s in self.secrets)
        self._mask_failed_logged = False

    def encode_json(self, value: Any, *, masked: bool = True) -> str | None:
        """The field as JSON text (``None`` when it converts to nothing): :meth:`encode`,
        then ``dumps``, by the fast path when it gives the same result."""
        if type(value) is not str and (self.mask is None or not masked):  # strings: ``encode``'s own
            text = self._plain_json(value)
            if text is not None:
                return None if text == "null" else text
        data = self.encode(value, masked=masked)
        if data is None:
            return None
        return encode_basestring(data) if type(data) is str else dumps(data)

    def _plain_json(self, value: Any) -> str | None:
        """``value`` as JSON if the general conversion would leave it as it is, else ``None``.

        The C encoder refuses what is not plain data (objects, sets, cycles, NaN). What it
        accepts converts to itself unless a string or key needs scrubbing, the field is
        over the size cap, or it hits the depth or item limits; each is ruled out on the
        text, conservatively (the bracket and comma counts include those inside strings).
        """
        resolver = _DeferredResolver()
        try:
            text = _plain_json_text(value, resolver)
            data = text.encode("utf-8")  # lone surrogates fail here: scrub_text replaces them
        except Exception:  # noqa: BLE001 - not plain data, or a Deferred's conversion failed
            return None
        if (
            len(data) > self.max_bytes
            or text.count("[") + text.count("{") + resolver.count >= MAX_DEPTH
            or text.count(",") >= MAX_ITEMS
            or _may_need_conversion(data.translate(_FOLD))
            or any(secret in text for secret in self._secrets_in_json)
        ):
            return None
        return text

    def encode(self, value: Any, *, masked: bool = True) -> Any:
        if type(value) is str and (self.mask is None or not masked):
            # The commonest field, a plain string: what the general path below would do.
            text = scrub_text(value, self.secrets)
            return text if 6 * len(text) + 32 <= self.max_bytes else cap_size(text, self.max_bytes)
        encoder = _Encoder(self.secrets)
        data = encoder.convert(value)
        if masked and self.mask is not None:
            try:
                encoder = _Encoder(self.secrets)
                data = encoder.convert(self.mask(data))
            except Exception as exc:  # noqa: BLE001 - fail closed
                if not self._mask_failed_logged:
                    self._mask_failed_logged = True
                    logger.error(
                        "lunatrace: the mask hook raised %s; affected fields are fully masked",
                        type(exc).__name__,
                    )
                return MASKED
        if encoder.max_json_bytes() <= self.max_bytes:
            return data  # certainly within the cap: no need to measure it exactly
        return cap_size(data, self.max_bytes)
