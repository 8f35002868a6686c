"""Exit is bounded by ``exit_timeout`` plus about a second, whatever the application's
objects or the store do, and what could not be kept is counted and reported.

Real programs in subprocesses: before, a ``__repr__`` that blocks was called again on
the exiting thread (the program never ended), and a store locked by another process
cost 30 s per write at exit with nothing counted.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from lunatrace.core.transport.store import EventStore

ROOT = Path(__file__).resolve().parents[3]
EXIT_TIMEOUT = 1.0


def run_to_exit(code: str, **env: str) -> tuple[float, str]:
    """Run ``code``; its wall time from start to exit, and its stderr."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT), "LUNATRACE_EXIT_TIMEOUT": str(EXIT_TIMEOUT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started, done.stderr


def baseline() -> float:
    return run_to_exit("import lunatrace; lunatrace.get_tracer()")[0]


BLOCKING_REPR = """
import threading
import lunatrace

class Stuck:
    def __repr__(self):
        threading.Event().wait()  # never returns

@lunatrace.trace
def handle(request):
    return "ok"

handle(Stuck())
print("returned")
"""


def test_a_repr_that_never_returns_does_not_hold_the_exit() -> None:
    took, stderr = run_to_exit(BLOCKING_REPR)
    assert took - baseline() < EXIT_TIMEOUT + 1.5
    assert "could not be kept at exit" in stderr


LOCKED_STORE_BURST = """
import lunatrace
tracer = lunatrace.get_tracer()
for i in range(200):
    tracer.end_run(tracer.start_run("tool", f"r{i}", i), i)
"""


def test_a_store_locked_by_another_process_costs_the_exit_timeout_and_is_counted() -> None:
    path = Path(os.environ["LUNATRACE_STORE"])
    EventStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        took, stderr = run_to_exit(LOCKED_STORE_BURST)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert took - baseline() < EXIT_TIMEOUT + 1.5
    assert "400 event(s) could not be kept at exit" in stderr
