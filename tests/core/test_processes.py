"""Processes that end without ``atexit``: multiprocessing children and SIGTERM.

Each test runs a real program in a subprocess, with no key (events go to the local store
named by LUNATRACE_STORE), and counts what the store holds once it has ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lunatrace.core.transport.store import EventStore
from tests.support.mp_tasks import RUNS_PER_TASK

ROOT = Path(__file__).resolve().parents[2]
TASKS = 12
TASK_EVENTS = 2 * RUNS_PER_TASK

SHAPES = {
    "fork Process": """
        ctx = mp.get_context("fork")
        children = [ctx.Process(target=process_main, args=(f"p{i}",)) for i in range(3)]
        for p in children: p.start()
        for p in children: p.join()
        expected = 3 * (TASK_EVENTS + 1)
    """,
    "fork Process leaving a run open": """
        # No root run ends in the child: only the exit of the Process can deliver.
        def leave_open(label):
            lunatrace.get_tracer().start_run("tool", label, None)
        p = mp.get_context("fork").Process(target=leave_open, args=("open",)); p.start(); p.join()
        expected = 1
    """,
    "forkserver Process": """
        ctx = mp.get_context("forkserver")
        p = ctx.Process(target=process_main, args=("fs",)); p.start(); p.join()
        expected = TASK_EVENTS + 1
    """,
    "fork Pool": """
        with mp.get_context("fork").Pool(2) as pool:
            pool.map(task, [f"t{i}" for i in range(TASKS)])
        expected = TASKS * TASK_EVENTS
    """,
    "spawn Pool": """
        with mp.get_context("spawn").Pool(2) as pool:
            pool.map(task, [f"t{i}" for i in range(TASKS)])
        expected = TASKS * TASK_EVENTS
    """,
    "ProcessPoolExecutor": """
        with ProcessPoolExecutor(2) as executor:
            list(executor.map(task, [f"t{i}" for i in range(TASKS)]))
        expected = TASKS * TASK_EVENTS
    """,
}

PROGRAM = """
import multiprocessing as mp
import lunatrace
from concurrent.futures import ProcessPoolExecutor
from tests.support.mp_tasks import RUNS_PER_TASK, process_main, task

TASKS, TASK_EVENTS = {tasks}, {events}

if __name__ == "__main__":
{body}
    print(expected)
"""


def run(
    code: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stored_events() -> int:
    path = Path(os.environ["LUNATRACE_STORE"])
    return int(EventStore(path).stats()["events"]) if path.exists() else 0


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_multiprocessing_child_keeps_its_events(shape: str) -> None:
    body = textwrap.indent(textwrap.dedent(SHAPES[shape]).strip(), "    ")
    done = run(PROGRAM.format(tasks=TASKS, events=TASK_EVENTS, body=body))
    assert done.returncode == 0, done.stderr
    assert stored_events() == int(done.stdout.split()[-1])


BURST = """
import sys, time
import lunatrace
tracer = lunatrace.get_tracer()
for i in range(20_000):
    tracer.end_run(tracer.start_run("tool", f"r{i}", i), i)
print("emitted", flush=True)
time.sleep(60)
"""


def test_sigterm_keeps_the_queued_tail_and_ends_as_sigterm_would() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", BURST],
        env={**os.environ, "PYTHONPATH": str(ROOT), "LUNATRACE_QUEUE_SIZE": "100000"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "emitted"
    child.send_signal(signal.SIGTERM)  # docker stop: most of the burst is still queued
    assert child.wait(30) == -signal.SIGTERM
    assert stored_events() == 40_000


def test_an_applications_own_sigterm_handler_is_never_replaced() -> None:
    done = run(
        textwrap.dedent(
            """
            import signal
            import lunatrace
            def own(signum, frame): pass
            signal.signal(signal.SIGTERM, own)
            lunatrace.trace(print)("traced")
            print(signal.getsignal(signal.SIGTERM) is own)
            """
        )
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "True"


def test_a_forked_child_does_not_inherit_the_sigterm_handler() -> None:
    # A pool worker with it could hang Pool.__exit__, which terminates workers with SIGTERM.
    done = run(
        textwrap.dedent(
            """
            import multiprocessing as mp, signal
            import lunatrace

            def report(queue):
                queue.put(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)

            if __name__ == "__main__":
                lunatrace.trace(print)("traced")
                ctx = mp.get_context("fork")
                queue = ctx.Queue()
                child = ctx.Process(target=report, args=(queue,))
                child.start()
                print(signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, queue.get(timeout=30))
                child.join()
            """
        )
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["True", "True"]  # installed in the parent, not in the child
