"""Compact JSON text: the one shared encoder, and the compiled encoders of the fast path.

:func:`dumps` is the compact form every event is written in (no spaces, non-ASCII kept,
NaN refused: the serializer has made non-finite floats strings already).

:func:`plain_json` is the field encoder's fast path (see
:class:`~lunatrace.core.serialize.FieldEncoder`), for data it has already checked to be
plain (exact built-in types, finite floats, integers within 64 bits, string keys): the
same text as :func:`dumps`, from ``orjson`` (a hundred times faster on long strings than
the standard library's C encoder), or from CPython's C encoder called directly where the
two would differ. They differ in one place only: a float below ``1e-4`` in magnitude,
which ``orjson`` writes without an exponent (``0.00001``, not ``1e-05``); the caller says
when its data holds one. Without ``orjson`` (an interpreter it does not support), the C
encoder writes everything, and the standard ``JSONEncoder`` where that is missing too.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from json.encoder import encode_basestring  # C, no escaping of non-ASCII
from typing import Any

orjson: Any
try:
    orjson = importlib.import_module("orjson")
except ImportError:  # pragma: no cover - a dependency; absent only on interpreters it does not build for
    orjson = None

# One encoder for every call: ``json.dumps`` with options builds a new one each time.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

# Anything but the exact built-in types goes to ``default``, as it does for the C encoder
# (which the caller's checks rely on): orjson would otherwise write subclasses, dataclasses
# and datetimes its own way.
_ORJSON_OPTIONS = 0
if orjson is not None:
    _ORJSON_OPTIONS = (
        orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
    )


def loads(data: bytes) -> Any:
    """JSON from a server's answer: orjson's parse, else (an answer it refuses: not UTF-8,
    ``NaN``, an integer past 64 bits) the standard library's, which reads all of those.
    Raises ``ValueError`` for what is not JSON at all."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except ValueError:
            pass
    return json.loads(data)


def dumps(value: Any) -> str:
    """Compact JSON for JSON-ready data (``allow_nan`` off: non-finite floats raise)."""
    return _COMPACT.encode(value)


def converted_json(value: Any, floats: bool = True) -> str:
    """:func:`dumps` of data the general conversion made, from orjson when ``floats`` is
    false: such data holds only exact built-in types (anything else goes back to
    :func:`dumps`), strings that encode as UTF-8, integers within 64 bits and no float,
    the one value the two encoders write differently."""
    if floats or orjson is None:
        return dumps(value)
    try:
        data: bytes = orjson.dumps(value, None, _ORJSON_OPTIONS)
    except TypeError:  # a subclass of a built-in type (an IntEnum, a str subclass)
        return dumps(value)
    return data.decode("utf-8")


def _c_json(value: Any, default: Callable[[Any], Any]) -> str:
    """Compact JSON (non-ASCII kept, NaN refused) from CPython's C encoder called directly,
    without ``JSONEncoder.encode``'s two Python frames and object per call."""
    encode = _make_c_encoder({}, default, encode_basestring, None, ":", ",", False, False, False)
    return "".join(encode(value, 0))


def _python_json(value: Any, default: Callable[[Any], Any]) -> str:
    """The standard encoder, where the C one cannot be called directly. A new one per call:
    ``default`` differs from call to call."""
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default)
    return encoder.encode(value)


def _pick() -> Callable[[Any, Callable[[Any], Any]], str]:
    """:func:`_c_json` where this interpreter's C encoder behaves as expected, else the
    standard ``JSONEncoder`` (same output)."""
    sample = {"a": [1, 2.5, None, True, "é\n"], "b": {}}
    try:
        if _make_c_encoder is not None and _c_json(sample, repr) == _python_json(sample, repr):
            return _c_json
    except Exception:  # noqa: BLE001 - another C signature fails in its own way; importing must not
        pass
    return _python_json


_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)

c_json: Callable[[Any, Callable[[Any], Any]], str] = _pick()
"""``c_json(value, default)``: the standard library's compact JSON of ``value``."""


def plain_json(value: Any, default: Callable[[Any], Any], tiny_floats: bool) -> tuple[str, int]:
    """Checked plain data as compact JSON, and the text's size in UTF-8 bytes.

    ``default`` is called for what is not plain data (it returns a replacement or raises);
    ``tiny_floats``: the data holds a float below ``1e-4`` in magnitude (see above).
    Raises what the encoder raises (``TypeError``, ``ValueError``, ``UnicodeEncodeError``
    for a lone surrogate: it could not be sent as UTF-8) or ``default`` does.
    """
    if orjson is None or tiny_floats:
        text = c_json(value, default)
        return text, (len(text) if text.isascii() else len(text.encode("utf-8")))
    data = orjson.dumps(value, default, _ORJSON_OPTIONS)
    return data.decode("utf-8"), len(data)
