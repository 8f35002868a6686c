"""Costs in the views (notebook HTML, text) and the viewer's side panel and list query over
HTTP: an estimate is marked and sourced, a cost the application set wins, an unknown model
has none; the panel shows the run the address names; search and filters survive paging."""

from __future__ import annotations

import re
from typing import Any

import lunatrace
from lunatrace.core.pricing import SOURCE
from lunatrace.ui.server import ViewerServer
from lunatrace.view.html import render_html
from lunatrace.view.model import build_trace
from lunatrace.view.text import render_text
from tests.support.previous_store import previous_release_append
from tests.view.conftest import store_path
from tests.view.test_ui_server import get

T0 = "2026-06-01T10:00:00.000Z"


def _events(
    model: str, llm_metadata: dict[str, Any] | None = None, ended: str = "2026-06-01T10:00:00.800Z"
) -> list[dict[str, Any]]:
    prompt = [{"role": "user", "content": "What is the refund policy?"}]
    answer = {"role": "assistant", "content": "30 days."}
    return [
        {"type": "chain", "event": "start", "runId": "root", "timestamp": T0, "name": "RunnableSequence"},
        {"type": "llm", "event": "start", "runId": "llm", "parentRunId": "root", "timestamp": T0,
         "name": model, "input": prompt},
        {"type": "llm", "event": "end", "runId": "llm", "timestamp": ended, "output": answer,
         "tokensUsage": {"prompt": 1200, "completion": 300}, "metadata": llm_metadata},
        {"type": "chain", "event": "end", "runId": "root", "timestamp": ended, "output": "30 days."},
    ]  # fmt: skip


def test_the_notebook_view_marks_an_estimated_cost_and_names_its_source() -> None:
    trace = build_trace(_events("gpt-4o-mini"))
    html = trace._repr_html_()
    assert html == render_html(trace)
    source = SOURCE.replace("'", "&#x27;")
    marked = f'<span class="lt-cost lt-estimate" title="estimated from {source}">~$0.00036</span>'
    assert html.count(marked) == 3  # the trace's header, the llm run's row and its details
    assert f"cost {marked} (estimated from {source})" in html
    assert trace.cost_estimated and trace.runs["llm"].cost_estimated and not trace.runs["root"].cost_estimated


def test_a_cost_the_application_set_wins_and_an_unknown_model_or_a_cached_call_has_none() -> None:
    own = build_trace(_events("gpt-4o-mini", {"cost": 0.25}))
    assert (own.cost, own.cost_estimated) == (0.25, False)
    assert "$0.25" in render_text(own) and "~$" not in render_text(own) and SOURCE not in render_text(own)
    assert '<span class="lt-cost" title="set by the application (metadata.cost)">$0.25</span>' in render_html(
        own
    )
    unknown = build_trace(_events("house-model-7"))
    assert unknown.cost is None and "$" not in render_html(unknown) and "$" not in render_text(unknown)
    cached = build_trace(_events("gpt-4o-mini", ended="2026-06-01T10:00:00.004Z"))  # 4 ms: Lunary charges 0
    assert cached.cost is None


def _record(question: str, model: str = "gpt-4o-mini") -> None:
    tracer = lunatrace.get_tracer()
    root = tracer.start_run("chain", "RunnableSequence", {"question": question})
    llm = tracer.start_run("llm", model, [{"role": "user", "content": question}], parent_run_id=root)
    tracer.end_run(llm, "ok", usage={"prompt": 1, "completion": 1})
    tracer.end_run(root, "ok")


def test_the_trace_page_shows_the_run_the_address_names_beside_the_tree(serve: Any) -> None:
    _record("refund")
    lunatrace.flush()
    server: ViewerServer = serve()
    _, _, listing = get(server, "/")
    trace_id = re.search(r'data-trace-id="([^"]+)"', listing).group(1)  # type: ignore[union-attr]
    status, _, page = get(server, f"/trace/{trace_id}")
    assert (
        status == 200 and f'id="run-panel" aria-labelledby="run-panel-title" data-run-id="{trace_id}"' in page
    )
    llm_id = re.search(r'data-run-id="([^"]+)" data-run-type="llm"', page).group(1)  # type: ignore[union-attr]
    link = re.search(r'<a class="lt-name" href="([^"]+)"[^>]*>gpt-4o-mini</a>', page)
    assert link is not None and link.group(1) == f"/trace/{trace_id}?run={llm_id}#run-{llm_id}"
    status, _, selected = get(server, link.group(1).split("#")[0])
    assert status == 200 and f'id="run-{llm_id}" aria-current="true"' in selected
    assert selected.count('aria-current="true"') == 1
    panel = selected[selected.index('<aside class="lt-panel"') :]
    assert f'data-run-id="{llm_id}"' in panel and "tokens 1 prompt + 1 completion" in panel
    status, _, missing = get(server, f"/trace/{trace_id}?run=%3Cu%3Enope")
    assert status == 200 and "This trace has no run &lt;u&gt;nope." in missing
    assert f'data-run-id="{trace_id}">' in missing  # the root instead
    _, _, refreshing = get(server, f"/trace/{trace_id}?run={llm_id}&refresh=5")
    assert f'href="/trace/{trace_id}?run={llm_id}&amp;refresh=5#run-{llm_id}"' in refreshing  # kept on a pick
    assert f'href="/trace/{trace_id}?run={llm_id}">stop</a>' in refreshing  # and the pick kept on stopping


def test_search_and_filters_are_in_every_page_link_and_a_bad_time_is_said(serve: Any) -> None:
    for n in range(30):
        _record(f"refund {n}")
    _record("password")
    lunatrace.flush()
    server: ViewerServer = serve()
    status, _, page = get(server, "/?q=refund&since=1h&errors=&refresh=5")
    assert status == 200 and "page 1 of 2 · 30 traces" in page
    assert 'href="/?q=refund&amp;since=1h&amp;page=2&amp;refresh=5"' in page
    assert 'name="q" value="refund"' in page and '<meta http-equiv="refresh" content="5">' in page
    status, _, page = get(server, "/?q=refund&until=tomorrow-ish")
    assert "until: cannot read &#x27;tomorrow-ish&#x27; as a time" in page and "30 traces" in page
    status, _, page = get(server, "/?q=password&errors=1")
    assert 'id="no-match"' in page and 'name="errors" value="1" checked' in page


def test_the_list_indexes_what_an_older_release_wrote_while_it_ran(serve: Any) -> None:
    _record("refund")
    lunatrace.flush()
    server: ViewerServer = serve()
    late = {"type": "chain", "event": "start", "runId": "late-run", "name": "late", "input": "zebra crossing"}
    previous_release_append(store_path(), late)
    _, _, page = get(server, "/?q=zebra")
    assert 'data-trace-id="late-run"' in page and "zebra crossing" in page
