"""Compact JSON text: the one shared encoder, and the C encoder called directly.

:func:`dumps` is the compact form every event is written in (no spaces, non-ASCII kept,
NaN refused: the serializer has made non-finite floats strings already).

:func:`plain_json_text` is the field encoder's fast path (see
:class:`~lunatrace.core.serialize.FieldEncoder`): the same text from CPython's C
encoder, called without ``JSONEncoder.encode``'s two Python frames and object per call,
and given up on (:class:`TooLarge`) once the strings exceed the field's cap, before a
huge string is copied. Where this interpreter's C encoder is missing or behaves
otherwise, the standard ``JSONEncoder`` gives the same text, without the early refusal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import encode_basestring  # C, no escaping of non-ASCII
from typing import Any

# One encoder for every call: ``json.dumps`` with options builds a new one each time.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> str:
    """Compact JSON for JSON-ready data (``allow_nan`` off: non-finite floats raise)."""
    return _COMPACT.encode(value)


class TooLarge(Exception):
    """The strings alone exceed the field's cap: the general path will cut them."""


def _string_budget(max_chars: int) -> Callable[[str], str]:
    """The C encoder's string encoder, giving up once the field's strings exceed
    ``max_chars``: the C encoder would otherwise copy a huge string (and the text around it,
    twice more) before the size check could refuse the field."""
    left = max_chars

    def encode(text: str) -> str:
        nonlocal left
        left -= len(text)
        if left < 0:
            raise TooLarge
        return encode_basestring(text)

    return encode


def _c_json(value: Any, default: Callable[[Any], Any], max_chars: int) -> str:
    """Compact JSON (non-ASCII kept, NaN refused) from CPython's C encoder called directly.
    Raises :class:`TooLarge` past ``max_chars`` of strings, or of text (numbers)."""
    encode = _make_c_encoder({}, default, _string_budget(max_chars), None, ":", ",", False, False, False)
    chunks = encode(value, 0)
    if len(chunks) > 1 and sum(map(len, chunks)) > max_chars:
        raise TooLarge  # a long text comes in pieces: no need to join them to refuse it
    return "".join(chunks)


def _python_json(value: Any, default: Callable[[Any], Any], max_chars: int) -> str:
    """The standard encoder, where the C one cannot be called directly (no string budget).
    A new one per call: ``default`` differs from call to call."""
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default)
    return encoder.encode(value)


def _pick() -> Callable[[Any, Callable[[Any], Any], int], str]:
    """:func:`_c_json` where this interpreter's C encoder behaves as expected, else the
    standard ``JSONEncoder`` (same output)."""
    sample = {"a": [1, 2.5, None, True, "é\n"], "b": {}}
    try:
        if _make_c_encoder is not None and _c_json(sample, repr, 100) == _python_json(sample, repr, 100):
            return _c_json
    except Exception:  # noqa: BLE001 - another C signature fails in its own way; importing must not
        pass
    return _python_json


_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)

plain_json_text: Callable[[Any, Callable[[Any], Any], int], str] = _pick()
"""``plain_json_text(value, default, max_chars)``: ``value`` as compact JSON, ``default``
called for what is not plain data (it returns a replacement or raises). May raise
:class:`TooLarge` once the strings exceed ``max_chars``, and raises what the encoder raises
(``TypeError``, ``ValueError``) or ``default`` does."""
