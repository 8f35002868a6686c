"""The fake server itself answers the way the protocol notes say the real one does."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

from tests.support.fake_lunary import DUPLICATE_START, FakeLunary


def _event(kind: str = "start", ts: str = "2026-01-01T00:00:00.000Z", **extra: object) -> dict[str, object]:
    return {"type": "chain", "event": kind, "runId": str(uuid.uuid4()), "timestamp": ts, **extra}


def _post(server: FakeLunary, body: object, *, key: str | None = "valid", path: str = "/v1/runs/ingest"):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {server.key if key == 'valid' else key}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(server.url + path, data=data, headers=headers, timeout=5)


def test_accepts_a_batch_and_answers_one_result_per_event(lunary_server: FakeLunary) -> None:
    late, early = _event(ts="2026-01-01T00:00:01.000Z"), _event(ts="2026-01-01T00:00:00.000Z")
    answer = _post(lunary_server, {"events": [late, early]})
    assert answer.status_code == 200
    assert [r["id"] for r in answer.json()["results"]] == [early["runId"], late["runId"]]
    assert lunary_server.events == [early, late]


def test_empty_batch_checks_the_key(lunary_server: FakeLunary) -> None:
    assert _post(lunary_server, {"events": []}).json() == {"results": []}
    assert _post(lunary_server, {"events": []}, key=str(uuid.uuid4())).status_code == 401
    assert _post(lunary_server, {"events": []}, key=None).status_code == 402


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), ([], 500), ({"nothing": 1}, 500)],
)
def test_refuses_bad_bodies(lunary_server: FakeLunary, body: object, status: int) -> None:
    assert _post(lunary_server, body).status_code == status


def test_trailing_slash_is_refused(lunary_server: FakeLunary) -> None:
    assert _post(lunary_server, {"events": []}, path="/v1/runs/ingest/").status_code == 401


def test_body_over_the_limit_is_413() -> None:
    with FakeLunary(body_limit=1000) as server:
        assert _post(server, {"events": [_event(input="x" * 2000)]}).status_code == 413
        assert server.events == []


def test_duplicate_start_fails_per_event(lunary_server: FakeLunary) -> None:
    start = _event()
    _post(lunary_server, {"events": [start]})
    results = _post(lunary_server, {"events": [start]}).json()["results"]
    assert results == [{"id": start["runId"], "success": False, "error": DUPLICATE_START}]
    assert lunary_server.events == [start]


def test_faults_are_applied_in_turn(lunary_server: FakeLunary) -> None:
    lunary_server.rate_limit_next(1, retry_after=3)
    lunary_server.fail_next(1, 503)
    lunary_server.reset_next(1)
    limited = _post(lunary_server, {"events": [_event()]})
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    assert _post(lunary_server, {"events": [_event()]}).status_code == 503
    with pytest.raises(requests.ConnectionError):
        _post(lunary_server, {"events": [_event()]})
    assert _post(lunary_server, {"events": [_event()]}).status_code == 200
    assert len(lunary_server.events) == 1


def test_down_then_up_on_the_same_port(lunary_server: FakeLunary) -> None:
    port = lunary_server.port
    lunary_server.stop()
    with pytest.raises(requests.ConnectionError):
        _post(lunary_server, {"events": []})
    lunary_server.start()
    assert lunary_server.port == port
    assert _post(lunary_server, {"events": []}).status_code == 200


def test_the_rate_limiter_counts_as_the_real_one() -> None:
    """koa-ratelimit's memory driver: the window starts at its first request; every answer
    says the requests left after it, the reset (Unix seconds) and the limit; past the limit,
    a plain-text 429 with ``Retry-After`` in whole seconds to the reset. A refused key is
    answered before the limiter and not counted."""
    with FakeLunary(rate_limit=3, rate_window=60.0) as server:
        started = time.time()
        unknown = _post(server, {"events": []}, key=str(uuid.uuid4()))
        assert unknown.status_code == 401 and "Rate-Limit-Remaining" not in unknown.headers
        answers = [_post(server, {"events": [_event()]}) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert [a.headers["Rate-Limit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
        assert {a.headers["Rate-Limit-Total"] for a in answers} == {"3"}
        (reset,) = {float(a.headers["Rate-Limit-Reset"]) for a in answers}
        assert started + 60 <= reset <= time.time() + 60
        limited = answers[-1]
        assert limited.text == "Sometimes You Just Have to Slow Down."
        assert limited.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert limited.headers["Retry-After"] in {"58", "59"}  # ``| 0``: truncated
        assert len(server.events) == 3


def test_the_rate_limit_window_starts_again_after_its_reset() -> None:
    with FakeLunary(rate_limit=1, rate_window=0.2) as server:
        assert [_post(server, {"events": []}).status_code for _ in range(2)] == [200, 429]
        time.sleep(0.25)
        again = _post(server, {"events": []})
        assert (again.status_code, again.headers["Rate-Limit-Remaining"]) == (200, "0")


def test_an_injected_429_carries_the_limiter_s_headers(lunary_server: FakeLunary) -> None:
    lunary_server.rate_limit_next(1, retry_after=2.5)
    limited = _post(lunary_server, {"events": [_event()]})
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2.5")
    assert limited.headers["Rate-Limit-Remaining"] == "0"
    assert 0 < float(limited.headers["Rate-Limit-Reset"]) - time.time() <= 2.5
