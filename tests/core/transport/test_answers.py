"""Answers that look like success but are not: redirects, and results that do not cover
the batch. Each used to count events as sent that no server stored."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import lunatrace
from tests.core.transport.helpers import emit_traces, keys_of, send_to, spooled
from tests.support.fake_lunary import FakeLunary


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_never_followed_and_is_reported_with_its_location(
    status: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeLunary() as elsewhere, FakeLunary() as server:
        elsewhere.valid_keys.add(server.key)  # a 307 would carry the key and the batch there
        server.fail_next(1, status, headers={"Location": elsewhere.ingest_url})
        store = tmp_path / "spool.db"
        send_to(server, store)
        with caplog.at_level(logging.ERROR, logger="lunatrace"):
            expected = emit_traces(3)
            assert lunatrace.flush(10)
        stats = lunatrace.stats()
        lunatrace.shutdown()
        assert elsewhere.requests == []
        assert f"redirects to {elsewhere.ingest_url}" in caplog.text and "api_url" in caplog.text
        assert (stats["sent"], stats["spooled"]) == (0, len(expected))
        assert sorted(keys_of(spooled(store))) == sorted(expected)


@pytest.mark.parametrize("results", [[], [{"id": "x", "success": True}]])
def test_results_that_do_not_cover_the_batch_are_not_a_success(
    results: list[dict[str, object]], lunary_server: FakeLunary, tmp_path: Path
) -> None:
    lunary_server.fail_next(1, 200, body={"results": results})
    send_to(lunary_server, tmp_path / "spool.db", retry_timeout=10.0)
    expected = emit_traces(2)
    assert lunatrace.flush(10)
    stats = lunatrace.stats()
    assert (stats["sent"], stats["retried"]) == (len(expected), len(expected))
    assert sorted(keys_of(lunary_server.events)) == sorted(expected)
