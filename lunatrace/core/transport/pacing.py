"""Pacing requests to the server's rate limit, so that delivery never needs its 429.

The Lunary server allows so many requests per window and client address (150 a minute
by default) and says on every answer how many are left (``Rate-Limit-Remaining``) and
when the window resets (``Rate-Limit-Reset``, in Unix seconds). A busy process on a fast
network sends a batch every few tens of milliseconds: it would use the window up in
seconds, then wait out a 429's ``Retry-After`` while its queue fills and drops events.

Instead, requests are spaced at least ``seconds to the reset / requests remaining``
apart, which only holds one back when the budget would run out before the reset at the
current rate. Events accumulate meanwhile, and the backlog rule
(:func:`~lunatrace.core.transport.batch.batch_events`) makes the next batch take them all.
A server that sends no such headers is never waited for.

A caller waiting for delivery (``flush``, ``shutdown``) is not kept past its bound by a
pacing wait: one that would take more than half the time the caller has left is skipped,
and should the budget really be gone, the server's 429 and ``Retry-After`` are handled
as any 429.

The policy is pure (:func:`read_budget`, :func:`send_at`, :func:`worth_waiting`);
:class:`Pacer` keeps what the answers said, for every sender of a destination (its lanes
and its spool), since the server counts their requests together.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

RESET_MARGIN_S = 0.2  # after the reset, before the first request of the next window
CALLER_SHARE = 0.5  # the most of a waiting caller's time left that a pacing wait may take
WAIT_SLICE_S = 0.05  # a wait looks again this often: stopped, or a caller came to wait


@dataclass(frozen=True)
class Budget:
    """What one answer said of the rate limit, on this process's monotonic clock."""

    remaining: int  # requests the server still allows before the reset
    resets_at: float  # when its window resets
    seen_at: float  # when the answer said so


def read_budget(headers: Mapping[str, str], wall: float, now: float) -> Budget | None:
    """The budget an answer's headers give, read at ``wall`` (``time.time()``) and ``now``
    (``time.monotonic()``); ``None`` when they give none.

    The reset is a time on the server's clock. When the answer has a ``Date`` (whole
    seconds: the server's time is within a second after it), the wait to the reset is
    kept consistent with it, so a client clock that is minutes off does not stretch or
    squeeze the spacing.
    """
    try:
        remaining = int(headers["Rate-Limit-Remaining"])
        reset = float(headers["Rate-Limit-Reset"])
    except (KeyError, TypeError, ValueError):
        return None
    if remaining < 0 or not math.isfinite(reset):
        return None
    resets_in = reset - wall
    server_time = _date(headers.get("Date"))
    if server_time is not None:
        resets_in = min(max(resets_in, reset - server_time - 1.0), reset - server_time)
    return Budget(remaining, now + max(resets_in, 0.0), now)


def _date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def send_at(budget: Budget | None, last_sent: float) -> float:
    """The earliest time for the next request, after one sent at ``last_sent``.

    No budget known: at once. None left: just after the reset. Otherwise at least the
    time to the reset divided by the requests left after the last one, which is already
    past when requests come slower than that (nothing waits) and never later than the
    reset itself.
    """
    if budget is None:
        return last_sent
    if budget.remaining <= 0:
        return budget.resets_at + RESET_MARGIN_S
    return last_sent + (budget.resets_at - budget.seen_at) / budget.remaining


def worth_waiting(until: float, now: float, caller_deadline: float) -> bool:
    """Whether to hold a request until ``until``: yes, unless a caller waits for it until
    ``caller_deadline`` (``math.inf``: none, or without a bound) and the wait would take
    more than :data:`CALLER_SHARE` of the time it has left."""
    return until - now <= CALLER_SHARE * (caller_deadline - now)


class Pacer:
    """The last budget the server gave, and when the last request went out; shared by the
    senders of one destination (their requests count against the same limit).

    ``waited_until``: the earliest deadline of a caller waiting for delivery
    (``math.inf`` when none waits), asked during every wait.
    """

    def __init__(self, waited_until: Callable[[], float] = lambda: math.inf) -> None:
        self._waited_until = waited_until
        self._lock = threading.Lock()
        self._budget: Budget | None = None
        self._last_sent = -math.inf

    def observe(self, budget: Budget | None) -> None:
        """Note an answer's budget (an answer without one leaves the last one in force:
        a proxy's own error says nothing of the server's limit)."""
        if budget is not None:
            with self._lock:
                self._budget = budget

    def wait_turn(self, stop: threading.Event) -> float | None:
        """Wait until the next request may go out, and count it as sent; the seconds
        waited, or ``None`` if ``stop`` was set meanwhile (send nothing then)."""
        started = time.monotonic()
        with self._lock:
            until = max(started, send_at(self._budget, self._last_sent))
            self._last_sent = until  # the slot is taken: another lane goes after it
        now = started
        while now < until and worth_waiting(until, now, self._waited_until()):
            if stop.wait(min(until - now, WAIT_SLICE_S)):
                return None
            now = time.monotonic()
        if now < until:  # a caller could not wait so long: the request goes now
            with self._lock:
                self._last_sent = min(self._last_sent, now)
        return now - started
