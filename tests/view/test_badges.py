"""Interrupted, cancelled and resumed runs get their own marks in the terminal and the viewer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda

import lunatrace
from lunatrace.core.transport import MemorySink
from lunatrace.integrations.langchain import CallbackHandler
from lunatrace.view.html import render_html
from lunatrace.view.model import build_trace
from lunatrace.view.text import render_text
from tests.integrations.lc_fakes import pause_and_resume


def test_the_terminal_marks_a_paused_root_and_the_run_that_resumes_it(memory_sink: MemorySink) -> None:
    paused, _ = pause_and_resume("badges")
    lines = render_text(build_trace(memory_sink.events)).splitlines()
    (root_line,) = [line for line in lines if line.startswith("└─ chain approval")]
    assert "⏸ interrupted" in root_line
    (resumed_line,) = [line for line in lines if "chain approval" in line and "resumes" in line]
    assert f"↩ resumes {paused}" in resumed_line and "interrupted" not in resumed_line


def test_the_viewer_badges_them_and_links_the_resumed_run_to_the_paused_one(memory_sink: MemorySink) -> None:
    paused, resumed = pause_and_resume("badges")
    html = render_html(build_trace(memory_sink.events))
    assert f'id="run-{paused}"' in html
    assert '<span class="lt-badge lt-badge-interrupted">interrupted</span>' in html
    link = f'<a class="lt-badge lt-badge-resumes" href="#run-{paused}">resumes ↑</a>'
    assert html.index(f'data-run-id="{resumed}"') < html.index(link)  # on the resumed run's row


def test_a_cancelled_run_is_marked_cancelled_not_failed(memory_sink: MemorySink) -> None:
    async def cancel() -> None:
        async def slow(x: Any) -> Any:
            await asyncio.sleep(10)

        task = asyncio.create_task(
            RunnableLambda(slow, name="slow").ainvoke(1, config={"callbacks": [CallbackHandler()]})
        )
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel())
    trace = build_trace(memory_sink.events)
    (line,) = [line for line in render_text(trace).splitlines() if "chain slow" in line]
    assert "✓ success" in line and "⊘ cancelled" in line and "✗" not in line
    assert '<span class="lt-badge lt-badge-cancelled">cancelled</span>' in render_html(trace)
    assert lunatrace.get_tracer().open_runs == 0
