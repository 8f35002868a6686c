"""A run's end dropped by a full queue: counted as dropped, never reported as abandoned.

The LangChain handler's hooks are built on the worker, so a run is open in the registry
from the moment the worker builds its start until it builds its end. An end that the
queue dropped never arrives: the run stayed open until the hourly sweep, which then
reported a run that had succeeded as an abandoned one (an error).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableLambda

import lunatrace
from lunatrace.core.transport.store import EventStore
from lunatrace.integrations.langchain import CallbackHandler

_RUN = uuid.UUID("6f1c1d9e-3b8a-4f57-9d2a-0d7c2b1e4a10")


@pytest.fixture
def one_event_queue(tmp_path: Path) -> Iterator[Path]:
    """lunatrace with a queue of one event, into a local store, draining only when told."""
    path = tmp_path / "events.db"
    lunatrace.configure(store_path=path, queue_size=1, flush_interval=60.0)
    yield path
    lunatrace.shutdown(5)


def stored(path: Path) -> list[dict[str, object]]:
    return [event for _, event in EventStore(path).pending(1_000)]


def test_a_dropped_end_counts_as_dropped_and_the_sweep_reports_no_abandoned_run(
    one_event_queue: Path,
) -> None:
    step = RunnableLambda(lambda x: x + 1, name="step")
    assert step.invoke(1, config={"callbacks": [CallbackHandler()]}) == 2  # start queued, end dropped
    assert lunatrace.stats()["dropped_queue_full"] == 1
    assert not lunatrace.flush(5)  # False: an event was lost since the last flush
    tracer = lunatrace.get_tracer()
    (start,) = stored(one_event_queue)
    run_id = str(start["runId"])
    assert start["event"] == "start"
    assert tracer.close_abandoned(0) == 0  # the sweep, as if an hour had passed: nothing abandoned
    assert not tracer.is_open(run_id)  # closed, not left waiting for an end
    assert lunatrace.flush(5)
    assert [event["event"] for event in stored(one_event_queue)] == ["start"]
    assert lunatrace.stats()["dropped"] == 1


def test_a_run_whose_end_arrives_is_still_swept_as_abandoned_when_it_never_ends(
    one_event_queue: Path,
) -> None:
    # The same queue, drained between the hooks: nothing is dropped, and a run that
    # really never ends is still reported by the sweep.
    handler = CallbackHandler()
    handler.on_chain_start({"name": "open"}, {"x": 1}, run_id=_RUN)
    assert lunatrace.flush(5)
    assert lunatrace.get_tracer().close_abandoned(0) == 1
    assert lunatrace.flush(5)
    assert [event["event"] for event in stored(one_event_queue)] == ["start", "error"]
    assert lunatrace.stats()["dropped"] == 0
