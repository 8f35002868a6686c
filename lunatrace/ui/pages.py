"""The local viewer's pages: the trace list (filters, pagination, empty state) and a trace.

Pages are plain server-rendered HTML with no script at all; every value from the store is
escaped. The trace page reuses the notebook renderer, so both views always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from urllib.parse import urlencode

from lunatrace.core.events import RUN_TYPES
from lunatrace.core.transport.store import TraceSummary
from lunatrace.view.html import STYLE, icon_html, render_html, status_html
from lunatrace.view.model import ERROR, STARTED, SUCCESS, Trace, format_duration

PAGE_SIZE = 25
FILTERS = ("name", "type", "status", "user", "tag")

PAGE_STYLE = """
:root{color-scheme:light dark}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:#fff;color:#1d1f23}
@media (prefers-color-scheme:dark){body{background:#16181c;color:#e4e6ea}}
header.lt-top{display:flex;gap:16px;align-items:baseline;padding:10px 20px;
 border-bottom:1px solid rgba(127,127,127,.28)}
header.lt-top a{color:inherit;text-decoration:none;font-weight:700;font-size:16px}
main{padding:14px 20px;max-width:1300px}
a{color:#2f6fd6}
@media (prefers-color-scheme:dark){a{color:#7fb0ff}}
form.lt-filters{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin-bottom:12px}
form.lt-filters label{display:grid;font-size:11px;text-transform:uppercase;color:rgba(127,127,127,.95)}
form.lt-filters input,form.lt-filters select,form.lt-filters button{font:inherit;padding:3px 6px}
table.lt-list{border-collapse:collapse;width:100%}
table.lt-list th{text-align:left;font-size:11px;text-transform:uppercase;color:rgba(127,127,127,.95);
 padding:4px 8px;border-bottom:1px solid rgba(127,127,127,.28)}
table.lt-list td{padding:5px 8px;border-bottom:1px solid rgba(127,127,127,.15);vertical-align:top}
table.lt-list td.lt-n{text-align:right;font-variant-numeric:tabular-nums}
.lt-pager{display:flex;gap:14px;margin-top:12px;align-items:baseline}
.lt-emptystate{max-width:720px;padding:24px;border:1px dashed rgba(127,127,127,.5);border-radius:8px}
.lt-emptystate pre{padding:8px;background:rgba(127,127,127,.09);border-radius:6px;overflow:auto}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


@dataclass(frozen=True)
class ListQuery:
    """The trace list's filters and page, parsed from the query string."""

    name: str | None = None
    type: str | None = None
    status: str | None = None
    user: str | None = None
    tag: str | None = None
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, Sequence[str]]) -> ListQuery:
        values = {key: (params.get(key) or [""])[0].strip() or None for key in FILTERS}
        try:
            page = max(1, int((params.get("page") or ["1"])[0]))
        except ValueError:
            page = 1
        return cls(page=page, **values)

    @property
    def filters(self) -> dict[str, str | None]:
        return {key: getattr(self, key) for key in FILTERS}

    @property
    def filtered(self) -> bool:
        return any(self.filters.values())

    def link(self, page: int) -> str:
        params = {k: v for k, v in self.filters.items() if v}
        if page > 1:
            params["page"] = str(page)
        return "/" + ("?" + urlencode(params) if params else "")


def page(title: str, body: str) -> str:
    """A whole HTML document around ``body``."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{_e(title)}</title><style>{PAGE_STYLE}{STYLE}</style></head><body>"
        '<header class="lt-top"><a href="/">lunatrace</a><span>local trace viewer · read-only</span></header>'
        f'<main class="lt-vars">{body}</main></body></html>'
    )


def _select(name: str, options: Sequence[str], current: str | None) -> str:
    items = ['<option value="">any</option>'] + [
        f'<option value="{_e(o)}"{" selected" if o == current else ""}>{_e(o)}</option>' for o in options
    ]
    return f'<label>{_e(name)}<select name="{_e(name)}">{"".join(items)}</select></label>'


def _text_input(name: str, current: str | None) -> str:
    return f'<label>{_e(name)}<input name="{_e(name)}" value="{_e(current or "")}"></label>'


def _filters_form(query: ListQuery) -> str:
    return (
        '<form class="lt-filters" method="get" action="/">'
        + _text_input("name", query.name)
        + _select("type", sorted(RUN_TYPES), query.type)
        + _select("status", (SUCCESS, ERROR, STARTED), query.status)
        + _text_input("user", query.user)
        + _text_input("tag", query.tag)
        + '<button type="submit">Filter</button>'
        + ('<a href="/">clear</a>' if query.filtered else "")
        + "</form>"
    )


def _row(summary: TraceSummary) -> str:
    started = (summary.started_at or "").replace("T", " ").removesuffix("Z")
    duration = None if summary.duration_ms is None else int(summary.duration_ms)
    tags = " ".join(f'<span class="lt-chip">{_e(t)}</span>' for t in summary.tags)
    link = f"/trace/{_e(summary.trace_id)}"
    return (
        f'<tr data-trace-id="{_e(summary.trace_id)}"><td>{_e(started)}</td>'
        f"<td>{icon_html(summary.type or '')} {_e(summary.type or '')}</td>"
        f'<td><a href="{link}">{_e(summary.name or summary.trace_id)}</a></td>'
        f"<td>{status_html(summary.status)}</td>"
        f'<td class="lt-n">{_e(format_duration(duration))}</td>'
        f'<td class="lt-n">{summary.llm_calls}</td><td class="lt-n">{summary.tokens}</td>'
        f'<td class="lt-n">{summary.errors}</td><td>{_e(summary.user_id or "")}</td><td>{tags}</td></tr>'
    )


def empty_state(store_path: Path) -> str:
    """What to do when the store has no trace at all."""
    return (
        '<div class="lt-emptystate" id="empty-state"><h2>No traces yet</h2>'
        f"<p>The store <code>{_e(store_path)}</code> is empty. Record a first trace:</p>"
        "<ul><li>run the demo: <pre>lunatrace demo</pre></li>"
        "<li>or trace your own code; with no Lunary key configured, lunatrace keeps every "
        "event in this store:<pre>import lunatrace\n\n@lunatrace.trace\ndef answer(question):\n"
        "    return question.upper()\n\nanswer(&quot;hello&quot;)\nlunatrace.flush()</pre></li>"
        "<li>LangChain / LangGraph: pass <code>lunatrace.integrations.langchain.CallbackHandler()</code> "
        "in <code>config={&quot;callbacks&quot;: [...]}</code>; LlamaIndex: call "
        "<code>lunatrace.integrations.llama_index.instrument()</code>.</li></ul>"
        "<p>Then reload this page.</p></div>"
    )


def list_page(
    summaries: Sequence[TraceSummary], total: int, query: ListQuery, store_path: Path, store_total: int
) -> str:
    """The trace list, newest first, or an empty state."""
    if store_total == 0:
        return page("lunatrace · traces", empty_state(store_path))
    pages = max(1, -(-total // PAGE_SIZE))
    parts = [f"<h1>Traces</h1>{_filters_form(query)}"]
    if not summaries:
        parts.append(
            '<p class="lt-empty" id="no-match">No traces match these filters. <a href="/">Show all</a></p>'
        )
    else:
        head = "".join(
            f"<th>{h}</th>"
            for h in ("started (UTC)", "type", "name", "status", "duration", "llm", "tokens", "errors")
        )
        parts.append(
            f'<table class="lt-list"><thead><tr>{head}<th>user</th><th>tags</th></tr></thead><tbody>'
            + "".join(_row(s) for s in summaries)
            + "</tbody></table>"
        )
    if query.page > pages:
        parts.append(
            f'<p class="lt-empty" id="past-the-end">Page {query.page} is past the last page ({pages}). '
            f'<a href="{_e(query.link(pages))}">Go to page {pages}</a></p>'
        )
    shown_page = min(query.page, pages)
    pager = [f"<span>page {shown_page} of {pages} · {total} traces</span>"]
    if query.page > 1:
        pager.insert(0, f'<a rel="prev" href="{_e(query.link(query.page - 1))}">← newer</a>')
    if query.page < pages:
        pager.append(f'<a rel="next" href="{_e(query.link(query.page + 1))}">older →</a>')
    parts.append(f'<div class="lt-pager">{"".join(pager)}</div>')
    parts.append(f'<p class="lt-muted">store: <code>{_e(store_path)}</code></p>')
    return page("lunatrace · traces", "".join(parts))


def trace_page(trace: Trace, damaged: int = 0) -> str:
    """A trace's page; ``damaged`` rows of the store that could not be read are said in one line."""
    note = (
        f'<p class="lt-muted" role="status">{damaged} damaged event(s) of this trace could not be read '
        "and are left out.</p>"
        if damaged
        else ""
    )
    body = f'<p><a href="/">← all traces</a></p>{note}{render_html(trace, style=False)}'
    return page(f"lunatrace · {trace.name or trace.id}", body)


def not_found_page(message: str) -> str:
    return page(
        "lunatrace · not found", f'<h1>Not found</h1><p>{_e(message)}</p><p><a href="/">← all traces</a></p>'
    )
