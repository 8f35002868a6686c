"""Building and rendering a trace grow linearly with its runs.

Real traces are recorded through the tracer into the test's store, then read back the
way each view reads them: the viewer's page over HTTP, the notebook's HTML, the text
tree. Rather than a time limit (which a loaded machine would break), each view's cost
for 4x the runs is compared with its cost for 1x: linear work gives about x4, the
quadratic rendering this replaces gave x16. Costs are CPU time (the server thread's
included, other processes' not), with the garbage collector paused, whose collections
depend on whatever else the process holds.
"""

from __future__ import annotations

import gc
import http.client
import time
from collections.abc import Callable

import pytest

from lunatrace.ui.server import ViewerServer
from lunatrace.view.load import load_trace
from lunatrace.view.model import Trace
from lunatrace.view.text import render_text
from tests.view.big_trace import record_chain, record_trace
from tests.view.conftest import store_path

SCALE = 4
LINEAR_BOUND = 8.0  # x4 expected; well under the x16 of quadratic work
TRIES = 3


def cpu_cost(action: Callable[[], object]) -> float:
    """CPU seconds of one call, the collector paused."""
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        action()
        return time.process_time() - start
    finally:
        gc.enable()


def growth(small: Callable[[], object], large: Callable[[], object]) -> float:
    """How many times more ``large`` costs than ``small``: the small one's best of a few
    tries; the large one is tried a second time only when the ratio looks too high."""
    small_cost = min(cpu_cost(small) for _ in range(TRIES))
    large_cost = cpu_cost(large)
    if large_cost / small_cost >= LINEAR_BOUND:
        large_cost = min(large_cost, cpu_cost(large))
    return large_cost / small_cost


def page(server: ViewerServer, trace_id: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=600)
    connection.request("GET", f"/trace/{trace_id}")
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    assert response.status == 200
    return body


def views(server: ViewerServer) -> dict[str, Callable[[str, Trace], object]]:
    """Each way a trace is read and drawn, given its id and the trace already built."""
    return {
        "build the tree from the store": lambda trace_id, _: load_trace(store_path(), trace_id),
        "viewer page over HTTP": lambda trace_id, _: page(server, trace_id),
        "notebook HTML": lambda _, trace: trace._repr_html_(),
        "text tree": lambda _, trace: render_text(trace),
    }


def assert_linear(server: ViewerServer, small_id: str, large_id: str) -> None:
    small, large = load_trace(store_path(), small_id), load_trace(store_path(), large_id)
    for name, view in views(server).items():
        ratio = growth(lambda view=view: view(small_id, small), lambda view=view: view(large_id, large))
        assert ratio < LINEAR_BOUND, f"{name}: x{ratio:.1f} the cost for x{SCALE} the runs"


@pytest.mark.timeout(600)
def test_a_20000_run_trace_renders_in_linear_time(serve: Callable[..., ViewerServer]) -> None:
    runs = 20_000
    small_id, large_id = record_trace(runs // SCALE), record_trace(runs)
    server = serve()
    assert_linear(server, small_id, large_id)
    assert page(server, large_id).count('<details class="lt-run"') == runs
    trace = load_trace(store_path(), large_id)
    assert len(trace.runs) == runs and trace.errors > 0
    assert trace._repr_html_().count('<details class="lt-run"') == runs
    assert sum("─ " in line for line in render_text(trace).splitlines()) == runs


@pytest.mark.timeout(600)
def test_a_chain_thousands_deep_builds_and_renders_in_linear_time(serve: Callable[..., ViewerServer]) -> None:
    depth = 8_000
    small_id, large_id = record_chain(depth // SCALE), record_chain(depth)
    server = serve()
    assert_linear(server, small_id, large_id)
    trace = load_trace(store_path(), large_id)
    assert [depth for _, depth in trace.walk()] == list(range(depth))
    lines = render_text(trace).splitlines()
    assert len(lines) == 1 + depth * 3  # each run: its line, its input and output previews
    assert max(len(line) for line in lines) < 200  # deep levels folded, not drawn
    assert lines[-3].startswith("(+") and f"└─ chain plan level {depth - 2}  ✓ success" in lines[-3]
