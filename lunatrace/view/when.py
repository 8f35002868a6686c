"""Reading the moments a trace list is filtered by: ``2h`` ago, or a date and time.

``lunatrace traces --since/--until`` and the viewer's since/until boxes take the same
forms, so one parser serves both: a duration back from now (``45s``, ``30m``, ``2h``,
``7d``, ``2w``) or an ISO 8601 date or date and time (``2026-12-01``,
``2026-12-01 14:30``, ``2026-12-01T14:30:00+02:00``), UTC unless it names its offset.
"""

from __future__ import annotations

import datetime
import re
import time

_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
FORMS = "a duration back from now (30m, 2h, 7d) or a date/time (2026-12-01, 2026-12-01 14:30)"


def parse_when(text: str, now_ms: int | None = None) -> int:
    """``text`` as epoch milliseconds; ``ValueError`` saying which forms are read."""
    value = text.strip()
    ago = _AGO.fullmatch(value.lower())
    if ago:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return now - int(float(ago.group(1)) * _UNIT_MS[ago.group(2)])
    try:
        moment = datetime.datetime.fromisoformat(value.removesuffix("Z").removesuffix("z"))
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time: give {FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1000)
