"""Viewer benchmark: how building and rendering a trace grow with its runs.

Run: .venv/bin/python benchmarks/view_render.py [--runs 1000 5000 20000] [--repeat 3]

Each size is one trace recorded through the tracer with no key, into a fresh store
(tests/view/big_trace.py: an agent's steps with an llm and a tool call each, and a chain
runs/20 deep). It is then read the way each view reads it: the tree built from the
store, the viewer's page over HTTP from a real server, the notebook's HTML, the text
tree. Times are wall-clock seconds, best of ``--repeat``; the ratios against the
smallest size are what matters: linear work grows like the runs do.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["LUNATRACE_STORE"] = str(Path(tempfile.mkdtemp(prefix="lunatrace-bench-")) / "events.db")
for name in ("LUNARY_PUBLIC_KEY", "LUNARY_PRIVATE_KEY", "LUNARY_APP_ID"):
    os.environ.pop(name, None)  # no key: the tracer writes to the local store

import lunatrace  # noqa: E402
from lunatrace.ui.server import ViewerServer, make_server  # noqa: E402
from lunatrace.view.load import load_trace  # noqa: E402
from lunatrace.view.text import render_text  # noqa: E402
from tests.view.big_trace import record_trace  # noqa: E402

VIEWS = ("build tree", "viewer page", "notebook HTML", "text tree")


def best_of(repeat: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def cost(seconds: float, runs: int) -> str:
    return f"{seconds / runs * 1e6:4.0f}µs/run"


def get_page(server: ViewerServer, trace_id: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=3600)
    connection.request("GET", f"/trace/{trace_id}")
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"viewer answered {response.status}")


def measure(server: ViewerServer, runs: int, repeat: int) -> dict[str, float]:
    store = lunatrace.get_tracer().config.store_path
    trace_id = record_trace(runs)
    trace = load_trace(store, trace_id)
    assert len(trace.runs) == runs, f"{len(trace.runs)} runs recorded, {runs} expected"
    actions: dict[str, Callable[[], object]] = {
        "build tree": lambda: load_trace(store, trace_id),
        "viewer page": lambda: get_page(server, trace_id),
        "notebook HTML": trace._repr_html_,
        "text tree": lambda: render_text(trace),
    }
    return {view: best_of(repeat, action) for view, action in actions.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, nargs="+", default=[1_000, 5_000, 20_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = make_server(lunatrace.get_tracer().config.store_path, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sizes = sorted(args.runs)
        print(f"{'runs':>14}  " + "  ".join(f"{view:>26}" for view in VIEWS))
        base: dict[str, float] = {}
        for runs in sizes:
            times = measure(server, runs, args.repeat)
            base = base or times
            cells = [f"{times[v]:7.3f}s x{times[v] / base[v]:5.1f} ({cost(times[v], runs)})" for v in VIEWS]
            grew = f"{runs} x{runs / sizes[0]:g}"
            print(f"{grew:>14}  " + "  ".join(f"{c:>26}" for c in cells), flush=True)
        print(f"(x: against {sizes[0]} runs; linear work grows like the runs, quadratic like their square)")
    finally:
        server.shutdown()
        server.server_close()
        lunatrace.shutdown()


if __name__ == "__main__":
    main()
