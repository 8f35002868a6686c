"""Pacing delivery to the server's rate limit: the policy as pure functions, then a fake
server whose limiter counts as the real one does (10 requests per 3 s here)."""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import lunatrace
from lunatrace.core.transport.pacing import (
    CALLER_SHARE,
    RESET_MARGIN_S,
    Budget,
    Pacer,
    read_budget,
    send_at,
    worth_waiting,
)
from tests.core.transport.helpers import assert_delivered_in_order, assert_none_lost, emit_traces, send_to
from tests.support.fake_lunary import FakeLunary

WALL = 1_764_634_000.0  # time.time() when the answer was read
NOW = 500.0  # time.monotonic() then


def limiter_headers(remaining: int, reset: float, date: float | None = None) -> dict[str, str]:
    headers = {
        "Rate-Limit-Remaining": str(remaining),
        "Rate-Limit-Reset": repr(reset),
        "Rate-Limit-Total": "150",
    }
    if date is not None:
        headers["Date"] = email.utils.formatdate(date, usegmt=True)
    return headers


# --- reading the answer -----------------------------------------------------------------------


def test_the_budget_is_read_from_the_limiter_s_headers() -> None:
    budget = read_budget(limiter_headers(42, WALL + 30.5), WALL, NOW)
    assert budget == Budget(remaining=42, resets_at=NOW + 30.5, seen_at=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Rate-Limit-Remaining": "3"},
        {"Rate-Limit-Reset": repr(WALL + 5)},
        {"Rate-Limit-Remaining": "many", "Rate-Limit-Reset": repr(WALL + 5)},
        {"Rate-Limit-Remaining": "-1", "Rate-Limit-Reset": repr(WALL + 5)},
        {"Rate-Limit-Remaining": "3", "Rate-Limit-Reset": "nan"},
    ],
)
def test_an_answer_without_a_readable_budget_gives_none(headers: dict[str, str]) -> None:
    assert read_budget(headers, WALL, NOW) is None


def test_a_reset_already_past_on_this_clock_is_now() -> None:
    budget = read_budget(limiter_headers(0, WALL - 2), WALL, NOW)
    assert budget is not None and budget.resets_at == NOW


def test_a_client_clock_that_is_off_is_corrected_by_the_server_s_date() -> None:
    server_now = WALL - 300.0  # this machine's clock runs five minutes ahead
    budget = read_budget(limiter_headers(10, server_now + 20.3, date=server_now), WALL, NOW)
    assert budget is not None
    assert 19.3 - 1e-6 <= budget.resets_at - NOW <= 20.3 + 1e-6  # within the Date header's second


def test_a_clock_that_agrees_with_the_date_keeps_its_precision() -> None:
    budget = read_budget(limiter_headers(10, WALL + 20.25, date=WALL - 0.4), WALL, NOW)
    assert budget is not None and budget.resets_at == NOW + 20.25


# --- the next send time -----------------------------------------------------------------------


def test_no_budget_known_sends_at_once() -> None:
    assert send_at(None, NOW) == NOW


def test_requests_are_spaced_by_the_time_to_the_reset_over_what_is_left() -> None:
    budget = Budget(remaining=20, resets_at=NOW + 10.0, seen_at=NOW)
    assert send_at(budget, NOW - 0.01) == pytest.approx(NOW - 0.01 + 0.5)


def test_requests_slower_than_the_spacing_are_never_held() -> None:
    budget = Budget(remaining=20, resets_at=NOW + 10.0, seen_at=NOW)
    assert send_at(budget, NOW - 2.0) < NOW  # the last request went out long enough ago


def test_with_none_left_the_next_request_waits_for_the_reset() -> None:
    budget = Budget(remaining=0, resets_at=NOW + 7.0, seen_at=NOW)
    assert send_at(budget, NOW) == NOW + 7.0 + RESET_MARGIN_S


def test_spaced_requests_use_the_window_up_exactly_at_its_reset() -> None:
    """Replaying a window: each answer says one request fewer is left; the spacing never
    sends more than the limit before the reset, and never leaves the budget idle."""
    limit, reset = 150, NOW + 60.0
    sent_at, remaining, last = [], limit - 1, NOW  # the window's first request, at NOW
    while remaining > 0:
        at = send_at(Budget(remaining, reset, last), last)
        sent_at.append(at)
        remaining, last = remaining - 1, at
    assert len(sent_at) == limit - 1
    assert all(at <= reset + 1e-9 for at in sent_at)
    assert sent_at[-1] == pytest.approx(reset)
    assert send_at(Budget(0, reset, last), last) > reset


def test_a_caller_waits_for_a_pacing_wait_only_within_its_share_of_its_time() -> None:
    assert worth_waiting(NOW + 3600, NOW, math.inf)  # nobody waits (or without a bound)
    assert worth_waiting(NOW + CALLER_SHARE * 10 - 0.01, NOW, NOW + 10)
    assert not worth_waiting(NOW + CALLER_SHARE * 10 + 0.01, NOW, NOW + 10)
    assert not worth_waiting(NOW + 0.1, NOW, NOW - 1)  # a caller whose bound has passed


# --- the pacer ----------------------------------------------------------------------------


def out_of_budget_for_an_hour(pacer: Pacer) -> None:
    pacer.observe(Budget(remaining=0, resets_at=time.monotonic() + 3600, seen_at=time.monotonic()))


def test_a_pacing_wait_ends_when_delivery_is_told_to_stop() -> None:
    pacer = Pacer()
    out_of_budget_for_an_hour(pacer)
    stop = threading.Event()
    stop.set()
    assert pacer.wait_turn(stop) is None


def test_a_pacing_wait_is_skipped_for_a_caller_who_cannot_wait_that_long() -> None:
    pacer = Pacer(waited_until=lambda: time.monotonic() + 5)
    out_of_budget_for_an_hour(pacer)
    stop = threading.Event()
    stop.set()  # a wait would see it and give up: this one is not even begun
    assert pacer.wait_turn(stop) == 0.0


def test_an_answer_without_a_budget_keeps_the_last_one() -> None:
    stop = threading.Event()
    stop.set()
    assert Pacer().wait_turn(stop) == 0.0  # no budget known: no wait
    pacer = Pacer()
    out_of_budget_for_an_hour(pacer)
    pacer.observe(None)  # e.g. a proxy's 502
    assert pacer.wait_turn(stop) is None  # still waiting for the hour


# --- against the fake server's limiter ------------------------------------------------------

LIMIT, WINDOW = 10, 3.0


@pytest.fixture
def limited_server() -> Iterator[FakeLunary]:
    with FakeLunary(rate_limit=LIMIT, rate_window=WINDOW) as server:
        yield server
    lunatrace.shutdown()


def test_a_producer_far_above_the_limit_is_paced_without_a_single_429(
    limited_server: FakeLunary, tmp_path: Path
) -> None:
    """Traces for three windows, each worth far more batches than the window allows: no
    request is refused, batches grow instead, and every event arrives once, in order."""
    spool = tmp_path / "spool.db"
    batch = 12
    send_to(limited_server, spool, batch_max_events=batch, retry_timeout=10.0)
    expected = []
    stop_at = time.monotonic() + 3 * WINDOW
    while time.monotonic() < stop_at:
        expected += emit_traces(2)  # 12 events, one batch's worth, every 10 ms
        time.sleep(0.01)
    assert lunatrace.flush(3 * WINDOW)

    statuses = [request.status for request in limited_server.requests]
    assert statuses == [200] * len(statuses)
    assert len(statuses) < len(expected) / (4 * batch)  # far fewer, larger batches than a batch each
    assert_delivered_in_order(limited_server, expected)
    assert_none_lost(limited_server, spool, expected)
    stats = lunatrace.stats()
    assert (stats["sent"], stats["spooled"], stats["dropped"], stats["retried"]) == (len(expected), 0, 0, 0)
    assert stats["paced"] > 0 and stats["rate_limited"] == 0


def test_a_flush_that_cannot_wait_for_the_pacing_is_not_held_by_it(tmp_path: Path) -> None:
    """Two requests a minute: the second is due half a minute after the first, but a flush
    with a few seconds to wait sends it at once (the budget allows it)."""
    with FakeLunary(rate_limit=2, rate_window=60.0) as server:
        send_to(server, tmp_path / "spool.db")
        first = emit_traces(1)
        assert lunatrace.flush(10)
        second = emit_traces(1)
        assert lunatrace.flush(5)
        assert [request.status for request in server.requests] == [200, 200]
        assert_delivered_in_order(server, first + second)
        assert lunatrace.stats()["paced"] == 0
        lunatrace.shutdown()


def test_a_used_up_budget_does_not_hold_the_exit(tmp_path: Path) -> None:
    """None left for a minute: a flush that cannot wait meets the server's 429 and keeps the
    events in the spool within its bound, as for any 429; the exit is not held either."""
    spool = tmp_path / "spool.db"
    with FakeLunary(rate_limit=1, rate_window=60.0) as server:
        send_to(server, spool)
        first = emit_traces(1)
        assert lunatrace.flush(10)
        second = emit_traces(1)
        assert lunatrace.flush(3)  # kept: the spool, since the retry would outlast retry_timeout
        stats = lunatrace.stats()
        assert (stats["rate_limited"], stats["spooled"]) == (1, len(second))
        third = emit_traces(1)  # offline now: spooled behind the second, at the exit
        lunatrace.shutdown(1)
        assert [request.status for request in server.requests] == [200, 429]
        assert_none_lost(server, spool, first + second + third)
