"""Linking assembled runs into a forest, in time linear in the number of runs.

A trace can hold tens of thousands of runs, and a recursive agent makes chains thousands
deep, so nothing here walks up the parents or down a subtree once per run (that made
assembly quadratic): each run is visited a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lunatrace.view.model import Run


def looping(runs: Mapping[str, Run]) -> set[str]:
    """Ids of the runs whose chain of parents never reaches a root: the members of a
    parent cycle and the runs below one.

    Each chain is followed only until it meets a run already decided, and every run on
    it takes that answer, so each run is on one followed chain only.
    """
    decided: dict[str, bool] = {}
    for first in runs:
        path: list[str] = []
        on_path: set[str] = set()
        current: str | None = first
        while current is not None and current in runs and current not in decided and current not in on_path:
            path.append(current)
            on_path.add(current)
            current = runs[current].parent_id
        loops = current is not None and (current in on_path or decided.get(current, False))
        for run_id in path:
            decided[run_id] = loops
    return {run_id for run_id, loops in decided.items() if loops}


def link(runs: Mapping[str, Run]) -> list[Run]:
    """Attach children to parents; the roots, in the order of ``runs``. A run whose parent
    is unknown becomes a root, and so does every run caught in (or below) a cycle."""
    loops = looping(runs)
    roots: list[Run] = []
    for run in runs.values():
        parent = runs.get(run.parent_id) if run.parent_id else None
        if parent is None or run.id in loops:
            roots.append(run)
        else:
            parent.children.append(run)
    return roots


def _earliest(*values: int | None) -> int | None:
    return min((v for v in values if v is not None), default=None)


def _latest(*values: int | None) -> int | None:
    return max((v for v in values if v is not None), default=None)


def span_threads(roots: Iterable[Run]) -> None:
    """Give each synthetic run (a thread) the time span of everything below it.

    One pass from the leaves up: each run's span is folded from its children's, so a
    thread never walks its subtree (threads below threads would make that quadratic).
    """
    order = [run for root in roots for run, _ in root.walk()]
    spans: dict[str, tuple[int | None, int | None]] = {}  # run id -> its subtree's first, last ms
    for run in reversed(order):  # every child comes before its parent
        first: int | None = None
        last: int | None = None
        for child in run.children:
            child_first, child_last = spans[child.id]
            first, last = _earliest(first, child_first), _latest(last, child_last)
        if run.synthetic and run.children:
            run.start_ms, run.end_ms = first, last
        spans[run.id] = (_earliest(first, run.start_ms), _latest(last, run.start_ms, run.end_ms))
