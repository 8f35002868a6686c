"""Offline cost estimates agree with the cost the real Lunary server computes.

The same llm calls are traced twice: to the real server, whose ``run.cost`` column is what
the Lunary dashboard shows, and with no server, into the local store, where the viewer,
``lunatrace show`` and ``lunatrace traces`` estimate it from the price table generated
from the server's own migrations. Every model is checked: a token-priced row, one with a
cached-input reduction, a character-priced row, the server's older fallback list, an
unknown model and a call too fast to be charged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import lunatrace
from lunatrace.core.transport.store import EventStore
from lunatrace.view.load import load_trace
from tests.e2e.real.stored import stored_runs
from tests.support.real_lunary import Project, RealLunary

# model -> (usage, seconds the call takes)
CALLS: Mapping[str, tuple[dict[str, int], float]] = {
    "gpt-4o-mini": ({"prompt": 1200, "completion": 300}, 0.03),
    "gpt-4o": ({"prompt": 5000, "completion": 800, "promptCached": 2000}, 0.03),
    "claude-3-5-sonnet": ({"prompt": 700, "completion": 90}, 0.03),
    "gemini-pro": ({"prompt": 10, "completion": 10}, 0.03),  # priced by characters
    "my-gpt4-32k-deployment": ({"prompt": 1000, "completion": 1000}, 0.03),  # the older list
    "house-model-7": ({"prompt": 1000, "completion": 1000}, 0.03),  # unknown: no cost
    "gpt-4-turbo-preview": ({"prompt": 1000, "completion": 1000}, 0.0),  # under 10 ms: cached
}


@lunatrace.trace(type="agent", name="priced-calls")
def calls() -> None:
    tracer = lunatrace.get_tracer()
    for model, (usage, seconds) in CALLS.items():
        prompt = [{"role": "user", "content": f"A question for {model}, with an accent: café"}]
        llm = tracer.start_run("llm", model, prompt)
        time.sleep(seconds)
        tracer.end_run(llm, {"role": "assistant", "content": "An answer of a few words."}, usage=usage)


def test_offline_estimates_match_the_cost_the_real_server_stores(
    real_lunary: RealLunary, traced_to_real: Project, tmp_path: Path
) -> None:
    calls()
    server_cost: dict[str, Any] = {
        row["name"]: row["cost"] for row in stored_runs(real_lunary, traced_to_real) if row["type"] == "llm"
    }
    assert set(server_cost) == set(CALLS)
    assert server_cost["house-model-7"] is None and server_cost["gpt-4-turbo-preview"] is None
    assert all(server_cost[m] for m in CALLS if m not in ("house-model-7", "gpt-4-turbo-preview"))

    store = tmp_path / "offline" / "events.db"
    lunatrace.configure(project_key=None, store_path=store)
    calls()
    assert lunatrace.flush(10)
    trace = load_trace(store)
    offline = {run.name: run.cost for run in trace.runs.values() if run.type == "llm"}
    for model, cost in server_cost.items():
        assert offline[model] == (None if cost is None else pytest.approx(cost, rel=1e-9)), model
    assert all(run.cost_estimated for run in trace.runs.values() if run.cost is not None)
    # the list's summary, kept on append, adds up the same
    [summary] = EventStore(store).list_traces()
    assert summary.cost == pytest.approx(sum(c for c in server_cost.values() if c is not None))
    assert summary.cost_estimated
