"""One large, realistic trace recorded through the real tracer into the local store.

Shared by the rendering tests and ``benchmarks/view_render.py``, so the benchmark's
figures and the test's linearity check are about the same shape of trace: an agent
whose steps each make an llm call and a tool call (every 25th tool fails), plus a
planner that recurses ``runs // 20`` levels deep, since deep chains are what make
per-run walks up the parents (or indentation built level by level) grow quadratically.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lunatrace

# Events per flush, well under the tracer's default queue (10,000), so none are dropped.
_FLUSH_EVERY = 2_000


class _Recorder:
    """Starts and ends runs through the tracer, flushing before its queue could fill."""

    def __init__(self) -> None:
        self.tracer = lunatrace.get_tracer()
        self.runs = 0
        self._pending = 0

    def _count(self, events: int) -> None:
        self._pending += events
        if self._pending >= _FLUSH_EVERY:
            lunatrace.flush()
            self._pending = 0

    def start(
        self,
        run_type: str,
        name: str,
        parent: str | None,
        input: Any = None,  # noqa: A002 - the tracer's name
        params: Mapping[str, Any] | None = None,
    ) -> str:
        self.runs += 1
        self._count(1)
        return str(self.tracer.start_run(run_type, name, input, parent_run_id=parent, params=params))

    def end(self, run_id: str, output: Any = None, usage: Mapping[str, int] | None = None) -> None:
        self._count(1)
        self.tracer.end_run(run_id, output, usage=usage)

    def fail(self, run_id: str, message: str) -> None:
        self._count(1)
        self.tracer.error_run(run_id, RuntimeError(message))


def _step(recorder: _Recorder, parent: str, index: int) -> None:
    """A chain with an llm call and a tool call: three runs."""
    step = recorder.start("chain", f"step {index}", parent, input={"step": index})
    question = [{"role": "user", "content": f"what next after step {index}?"}]
    llm = recorder.start("llm", "gpt-4o-mini", step, input=question, params={"temperature": 0})
    answer = {"role": "assistant", "content": f"call the tool for step {index}"}
    recorder.end(llm, answer, usage={"prompt": 20, "completion": 8})
    tool = recorder.start("tool", "lookup", step, input={"query": f"item {index}"})
    if index % 25 == 0:
        recorder.fail(tool, f"lookup {index} timed out")
    else:
        recorder.end(tool, {"result": f"value {index}"})
    recorder.end(step, f"done {index}")


def _planner(recorder: _Recorder, parent: str, depth: int) -> None:
    """A chain ``depth`` runs deep: each level starts the next and ends after it."""
    opened: list[str] = []
    current = parent
    for level in range(depth):
        current = recorder.start("chain", f"plan level {level}", current, input={"level": level})
        opened.append(current)
    for run_id in reversed(opened):
        recorder.end(run_id, "planned")


def record_chain(depth: int) -> str:
    """Record a trace that is one chain ``depth`` runs deep under a root; returns its id."""
    recorder = _Recorder()
    root = recorder.start("agent", "deep-agent", None, input={"depth": depth})
    _planner(recorder, root, depth - 1)
    recorder.end(root, "reached the bottom")
    lunatrace.flush()
    return root


def record_trace(runs: int) -> str:
    """Record a trace of exactly ``runs`` runs (at least 2) in the store; returns its id.

    Uses the process's tracer, which with no key writes to the local store; the events
    are flushed there before this returns.
    """
    recorder = _Recorder()
    root = recorder.start("agent", "big-agent", None, input={"task": f"{runs} runs"})
    _planner(recorder, root, max(1, runs // 20))
    index = 0
    while recorder.runs + 3 <= runs:
        _step(recorder, root, index)
        index += 1
    while recorder.runs < runs:
        recorder.end(recorder.start("tool", "tidy", root), "tidied")
    recorder.end(root, "all done")
    lunatrace.flush()
    return root
