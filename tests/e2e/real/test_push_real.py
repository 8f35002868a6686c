"""Events that could not go to the server at once reach the real Lunary server later,
each exactly once: recorded offline then uploaded with ``lunatrace push``, kept in the
spool while the server refused the key, and held back by the server's real rate limit
when another client had used it up (lunatrace's own pacing is test_pacing_real.py).

``push`` runs as the real command in a process of its own, configured by environment
variables as in a user's shell. "Exactly once" is read on the server side: the stored
rows, and the ingestion requests the backend logged for the test's project.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import lunatrace
from lunatrace.core.transport.store import EventStore
from tests.conftest import REAL_DELIVERY
from tests.e2e.real.limits import probe, record_posts, window_with
from tests.e2e.real.stored import Node, Row, assert_finished, current_run, only, stored_runs
from tests.support.real_lunary import Project, RealLunary

CLI = Path(sys.executable).with_name("lunatrace")  # the console script installed beside Python
EVENTS_PER_TRACE = 6  # agent, its llm call, its tool: a start and an end each
RATE_LIMIT = 3  # requests a minute on the rate-limited server


# --- shared pieces ------------------------------------------------------------------------------


def record_traces(count: int) -> list[Node]:
    """``count`` traces through the public API: an agent ``job`` with an llm call (with
    token counts) and a tool. Returns each run's (id, parent id, type, name), as seen from
    inside the runs."""
    tracer = lunatrace.get_tracer()
    nodes: list[Node] = []

    @lunatrace.trace(type="tool", name="search")
    def search(query: str) -> str:
        return current_run()

    @lunatrace.trace(type="agent", name="job")
    def job(number: int) -> str:
        job_id = current_run()
        llm = tracer.start_run("llm", "gpt-4o-mini", [{"role": "user", "content": f"job {number}"}])
        tracer.end_run(llm, {"role": "assistant", "content": "done"}, usage={"prompt": 7, "completion": 3})
        nodes.extend(
            [
                (job_id, None, "agent", "job"),
                (llm, job_id, "llm", "gpt-4o-mini"),
                (search(f"job {number}"), job_id, "tool", "search"),
            ]
        )
        return f"job {number} done"

    for number in range(count):
        job(number)
    return nodes


def assert_nodes(rows: list[Row], expected: list[Node]) -> None:
    """The stored runs are exactly ``expected``: same ids, parents, types and names, each once."""
    assert len(rows) == len(expected)
    assert {(r["id"], r["parent_run_id"], r["type"], r["name"]) for r in rows} == set(expected)


def assert_stored_once(rows: list[Row], expected: list[Node]) -> None:
    """Every expected run is stored, once, finished, under its parent."""
    assert_nodes(rows, expected)
    assert_finished(rows)
    llms = [row for row in rows if row["type"] == "llm"]
    assert {(row["prompt_tokens"], row["completion_tokens"]) for row in llms} == {(7, 3)}


def ingest_requests(server: RealLunary, project: Project) -> int:
    """How many ingestion requests the backend processed for ``project`` (it logs one
    "Inserted N run for project <id>" line per request; a refused one never gets there)."""
    needle = f"run for project {project.project_id}"
    return sum(needle in line for line in server.log_path.read_text(errors="replace").splitlines())


def push(server: RealLunary, key: str, store: Path) -> subprocess.CompletedProcess[str]:
    """``lunatrace push`` in a process of its own, with the key, URL and store from the environment."""
    env = {
        **os.environ,
        "LUNARY_PUBLIC_KEY": key,
        "LUNARY_API_URL": server.url,
        "LUNATRACE_STORE": str(store),
    }
    done = subprocess.run([str(CLI), "push"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"push exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def assert_pushed_once(server: RealLunary, project: Project, store: Path, expected: list[Node]) -> None:
    """``push`` delivers the store's events; a second ``push`` sends nothing at all."""
    first = push(server, project.key, store)
    assert f"Pushed {len(expected) * 2} event(s)" in first.stdout, first.stdout
    rows = server.runs(project)
    assert_stored_once(rows, expected)
    requests_made = ingest_requests(server, project)
    assert requests_made >= 1
    assert EventStore(store).count_pending() == 0

    second = push(server, project.key, store)
    assert "Nothing to push" in second.stdout, second.stdout
    assert ingest_requests(server, project) == requests_made
    assert server.runs(project) == rows


# --- push ---------------------------------------------------------------------------------------


def test_events_recorded_offline_are_pushed_once(real_lunary: RealLunary, real_project: Project) -> None:
    """Traces recorded with no key (the local store) reach the server with ``push``, once."""
    store = Path(os.environ["LUNATRACE_STORE"])  # no key: the local store (see conftest)
    expected = record_traces(3)
    assert lunatrace.flush(60)
    assert lunatrace.stats()["stored"] == 3 * EVENTS_PER_TRACE
    assert lunatrace.stats()["sent"] == 0
    lunatrace.shutdown()
    assert real_lunary.runs(real_project) == []

    assert_pushed_once(real_lunary, real_project, store, expected)


def test_events_spooled_while_the_key_was_refused_are_pushed_with_the_right_key(
    real_lunary: RealLunary, real_project: Project, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A key the server does not know loses nothing: one error is logged, every event is
    kept in the spool, and ``push`` with the right key delivers them all, once."""
    store = tmp_path / "spool" / "events.db"
    unknown_key = str(uuid.uuid4())  # well-formed, but no project of the server has it
    lunatrace.configure(project_key=unknown_key, api_url=real_lunary.url, store_path=store, **REAL_DELIVERY)
    with caplog.at_level(logging.ERROR, logger="lunatrace"):
        expected = record_traces(2)
        assert lunatrace.flush(60)
        expected += record_traces(1)  # after the refusal: kept too, behind the first ones
        assert lunatrace.flush(60)
    stats = lunatrace.stats()
    assert (stats["spooled"], stats["sent"], stats["failed"]) == (3 * EVENTS_PER_TRACE, 0, 0)
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and unknown_key not in refusals[0], refusals
    lunatrace.shutdown()
    assert EventStore(store).count_pending() == 3 * EVENTS_PER_TRACE

    assert_pushed_once(real_lunary, real_project, store, expected)


# --- the real rate limit ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ratelimited_lunary() -> Iterator[RealLunary]:
    """A second real server (its own LUNARY_HOME) allowing RATE_LIMIT requests a minute per
    client, instead of the shared server's 100000: the limit is the server's, per address."""
    server = RealLunary("ratelimited", max_requests_per_minute=RATE_LIMIT).start()
    yield server
    server.stop()


def record_events(count: int) -> list[Node]:
    """Exactly ``count`` events: a chain of runs, each the child of the one before (so the
    order of the one-event requests matters), and a feedback when ``count`` is odd."""
    tracer = lunatrace.get_tracer()
    nodes: list[Node] = []
    parent: str | None = None
    for depth in range(count // 2):
        run_id = tracer.start_run(
            "agent" if parent is None else "tool", f"step-{depth}", {"depth": depth}, parent_run_id=parent
        )
        nodes.append((run_id, parent, "agent" if parent is None else "tool", f"step-{depth}"))
        parent = run_id
    for run_id, *_ in reversed(nodes):
        tracer.end_run(run_id, "ok")
    if count % 2:
        assert lunatrace.feedback(nodes[0][0], thumb="up", comment="fast enough")
    return nodes


def test_a_window_another_client_used_up_is_waited_out_and_every_event_delivered_once(
    ratelimited_lunary: RealLunary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another client of the same address (here the test) used the server's window up
    before lunatrace's first request, so lunatrace could not pace itself: it meets the
    429, waits the ``Retry-After`` it is given (no sooner, and not much longer), and every
    event is stored, each once."""
    server = ratelimited_lunary
    project = server.new_project()
    window = window_with(server, project, RATE_LIMIT, remaining=0, seconds=5)
    while window.remaining:
        window = probe(server, project, RATE_LIMIT)  # the rest of the window, used up
    probed = ingest_requests(server, project)  # the probes count too
    exchanges = record_posts(monkeypatch)
    lunatrace.configure(
        project_key=project.key,
        api_url=server.url,
        store_path=tmp_path / "spool" / "events.db",
        **{**REAL_DELIVERY, "flush_interval": 60.0, "retry_timeout": 90.0},  # one batch, at the flush
    )
    started = time.monotonic()
    count = 5
    expected = record_events(count)
    rows = stored_runs(server, project, timeout=window.resets_in + 30)
    elapsed = time.monotonic() - started

    assert [(e.status, e.events) for e in exchanges] == [(429, count), (200, count)]
    refused, delivered = exchanges
    assert refused.body == "Sometimes You Just Have to Slow Down."
    assert refused.headers["Content-Type"].startswith("text/plain")
    assert refused.headers["Retry-After"].isdigit()
    assert abs(int(refused.headers["Retry-After"]) - window.resets_in) < 2  # seconds to the reset
    assert delivered.sent_at - refused.answered_at >= int(refused.headers["Retry-After"]) - 0.05
    assert elapsed < window.resets_in + 15, f"delivery took {elapsed:.1f} s"

    assert ingest_requests(server, project) - probed == 1  # processed once by the server
    stats = lunatrace.stats()
    assert (stats["sent"], stats["failed"], stats["spooled"], stats["dropped"]) == (count, 0, 0, 0)
    assert (stats["retried"], stats["rate_limited"]) == (count, 1)
    assert_nodes(rows, expected)
    assert_finished(rows)
    assert only(rows, parent_run_id=None)["feedback"] == {"thumb": "up", "comment": "fast enough"}
