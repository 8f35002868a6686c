"""A busy process against the real server's stock rate limit (150 requests a minute per
client address): lunatrace paces its requests from the limiter's headers, never meets a
429, and every event is stored once. Then the fake server's limiter, the one the quick
tests pace against, is checked to answer as the real one does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import lunatrace
from tests.conftest import REAL_DELIVERY
from tests.e2e.real.limits import record_posts, window_with
from tests.e2e.real.stored import Node, assert_finished, stored_runs
from tests.support.fake_lunary import FakeLunary
from tests.support.real_lunary import RealLunary

STOCK_LIMIT = 150  # a stock server's MAX_REQUESTS_PER_MINUTE
PRODUCING_S = 20.0
TRACE_EVERY_S = 0.02  # an agent with an llm call under it: four events


@pytest.fixture(scope="session")
def stock_lunary() -> Iterator[RealLunary]:
    """A real server of its own (its own LUNARY_HOME) with a stock server's limit, instead
    of the shared server's 100000: the limit is the server's, per client address."""
    server = RealLunary("stocklimit", max_requests_per_minute=STOCK_LIMIT).start()
    yield server
    server.stop()


def produce(seconds: float) -> list[Node]:
    """A trace every :data:`TRACE_EVERY_S` for ``seconds``; every run it made."""
    tracer = lunatrace.get_tracer()
    nodes: list[Node] = []
    stop_at = time.monotonic() + seconds
    number = 0
    while time.monotonic() < stop_at:
        agent = tracer.start_run("agent", "job", {"n": number})
        llm = tracer.start_run(
            "llm", "gpt-4o-mini", [{"role": "user", "content": f"job {number}"}], parent_run_id=agent
        )
        tracer.end_run(llm, {"role": "assistant", "content": "done"}, usage={"prompt": 7, "completion": 3})
        tracer.end_run(agent, "ok")
        nodes += [(agent, None, "agent", "job"), (llm, agent, "llm", "gpt-4o-mini")]
        number += 1
        time.sleep(TRACE_EVERY_S)
    return nodes


def test_a_busy_process_is_paced_within_the_real_limit_and_every_event_stored_once(
    stock_lunary: RealLunary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unpaced, the worker would send a batch every ``flush_interval`` (50 ms): about 400
    requests in the 20 s, far past the 150 a minute. Paced, no request is refused."""
    server = stock_lunary
    project = server.new_project()
    window_with(server, project, STOCK_LIMIT, remaining=2, seconds=0)  # lunatrace's first request is let in
    exchanges = record_posts(monkeypatch)
    lunatrace.configure(
        project_key=project.key,
        api_url=server.url,
        store_path=tmp_path / "spool" / "events.db",
        **REAL_DELIVERY,
    )
    expected = produce(PRODUCING_S)
    rows = stored_runs(server, project, timeout=90)

    statuses = [e.status for e in exchanges]
    assert statuses == [200] * len(statuses), statuses
    assert len(exchanges) < STOCK_LIMIT
    assert sum(e.events for e in exchanges) == 2 * len(expected)
    stats = lunatrace.stats()
    assert (stats["sent"], stats["failed"], stats["spooled"], stats["dropped"]) == (
        2 * len(expected),
        0,
        0,
        0,
    )
    assert stats["paced"] > 0 and stats["rate_limited"] == 0 and stats["retried"] == 0
    assert len(rows) == len(expected)
    assert {(r["id"], r["parent_run_id"], r["type"], r["name"]) for r in rows} == set(expected)
    assert_finished(rows)


LimiterAnswer = tuple[int, str, str, str, bool]


def limiter_answers(url: str, key: str, count: int) -> list[LimiterAnswer]:
    """``count`` empty batches, each answer as the limiter shapes it: status, requests
    left, content type, body of a 429, and whether its ``Retry-After`` is the whole
    seconds to the reset (the reset itself must stay the same all along the window)."""
    answers: list[LimiterAnswer] = []
    resets: set[str] = set()
    for _ in range(count):
        reply = requests.post(
            f"{url}/v1/runs/ingest",
            json={"events": []},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        resets.add(reply.headers["Rate-Limit-Reset"])
        assert reply.headers["Rate-Limit-Total"] == str(STOCK_LIMIT)
        retry_after = reply.headers.get("Retry-After")
        to_reset = float(reply.headers["Rate-Limit-Reset"]) - time.time()
        whole = (
            retry_after is not None and retry_after.isdigit() and abs(int(retry_after) - int(to_reset)) <= 1
        )
        body = reply.text if reply.status_code == 429 else ""
        answers.append(
            (
                reply.status_code,
                reply.headers["Rate-Limit-Remaining"],
                reply.headers["Content-Type"],
                body,
                whole,
            )
        )
    assert len(resets) == 1, resets
    return answers


def test_the_fake_s_rate_limiter_answers_as_the_real_one(stock_lunary: RealLunary) -> None:
    """The rest of a real window, then one request more, against a fake brought to the
    same point of its own window: the same answers, the 429 included."""
    project = stock_lunary.new_project()
    left = window_with(stock_lunary, project, STOCK_LIMIT, remaining=0, seconds=10).remaining
    real = limiter_answers(stock_lunary.url, project.key, left + 1)
    with FakeLunary(rate_limit=STOCK_LIMIT) as fake:
        limiter_answers(fake.url, fake.key, STOCK_LIMIT - left)  # its window, down to ``left``
        assert limiter_answers(fake.url, fake.key, left + 1) == real
    assert real[-1] == (429, "0", "text/plain; charset=utf-8", "Sometimes You Just Have to Slow Down.", True)
    assert [answer[1] for answer in real[:-1]] == [str(n) for n in range(left - 1, -1, -1)]
