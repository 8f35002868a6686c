"""With no key, events go to the local store through the same background worker."""

from __future__ import annotations

import email.utils
import logging
import os
import time
from pathlib import Path

import pytest

import lunatrace
from lunatrace.core.transport.http import parse_retry_after
from lunatrace.core.transport.store import EventStore
from tests.core.transport.helpers import emit_traces, keys_of


def test_events_without_a_key_land_in_the_store_with_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    store_path = Path(os.environ["LUNATRACE_STORE"])
    with caplog.at_level(logging.INFO, logger="lunatrace"):
        expected = emit_traces(3)
        more = emit_traces(2)
        assert lunatrace.flush(5)
    notices = [r.getMessage() for r in caplog.records if "no project key" in r.getMessage()]
    assert len(notices) == 1
    assert str(store_path) in notices[0] and "lunatrace traces" in notices[0]
    store = EventStore(store_path)
    assert keys_of([event for _, event in store.pending(100)]) == expected + more
    assert store.count_traces() == 5
    assert lunatrace.stats()["stored"] == len(expected + more)


def test_an_unusable_store_is_reported_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's folder should be")
    lunatrace.configure(store_path=blocker / "events.db")
    with caplog.at_level(logging.ERROR, logger="lunatrace"):
        expected = emit_traces(1)
        assert lunatrace.flush(5) is False  # done, but not everything was kept
    stats = lunatrace.stats()
    assert stats["dropped"] == stats["dropped_store_unusable"] == len(expected)
    assert "cannot open the lunatrace store" in caplog.text


def test_a_store_that_comes_back_is_used_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lunatrace.core.transport import destinations

    monkeypatch.setattr(destinations, "STORE_REOPEN_S", 0.2)
    blocker = tmp_path / "later-a-dir"
    blocker.write_text("a file where the store's folder should be, for now")
    lunatrace.configure(store_path=blocker / "events.db")
    with caplog.at_level(logging.WARNING, logger="lunatrace"):
        lost = emit_traces(1)
        assert lunatrace.flush(5) is False
        assert lunatrace.stats()["dropped"] == len(lost)
        blocker.unlink()  # the problem is fixed while the app keeps running
        time.sleep(0.3)
        kept = emit_traces(2)
        assert lunatrace.flush(5)
    assert "usable again" in caplog.text
    assert caplog.text.count("cannot open the lunatrace store") == 1  # reported once
    store = EventStore(blocker / "events.db")
    assert keys_of([event for _, event in store.pending(100)]) == kept


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0.5", 0.5), ("-2", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    header = email.utils.formatdate(time.time() + 30, usegmt=True)
    value = parse_retry_after(header)
    assert value is not None and 28 <= value <= 30
