"""The wire's timestamps: ISO 8601 UTC with milliseconds, written and read in one place."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any


def format_timestamp(ms: int) -> str:
    """``2026-01-01T00:00:00.000Z``: ISO 8601 UTC with milliseconds, as the server stores.

    Events come in bursts within the same second, often the same millisecond: the last
    millisecond's text, and the second's formatted part, are reused.
    """
    global _last_second, _last_ms
    last = _last_ms
    if last[0] == ms:
        return last[1]
    seconds, millis = divmod(ms, 1000)
    second, prefix = _last_second
    if second != seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, prefix)  # one tuple: atomic for concurrent callers
    text = f"{prefix}.{millis:03d}Z"
    _last_ms = (ms, text)  # one tuple: atomic for concurrent callers
    return text


_last_second: tuple[int, str] = (-1, "")
_last_ms: tuple[int, str] = (-1, "")


def parse_timestamp(value: Any) -> int | None:
    """Epoch milliseconds from a wire timestamp (any ISO 8601 form); ``None`` if unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return round(moment.timestamp() * 1000)
