"""Work for multiprocessing children in the process tests: importable by spawned workers."""

from __future__ import annotations

import lunatrace

RUNS_PER_TASK = 10


@lunatrace.trace(type="tool")
def step(i: int) -> int:
    return i * 2


@lunatrace.trace(type="agent")
def task(label: str) -> str:
    """One root run with RUNS_PER_TASK - 1 children: 2 * RUNS_PER_TASK events."""
    for i in range(RUNS_PER_TASK - 1):
        step(i)
    return label


def process_main(label: str) -> None:
    task(label)
    lunatrace.open_thread().track_message("user", f"sent from {label}")  # outside any run
