"""The local viewer's pages: the trace list (filters, pagination, empty state) and a trace.

Pages are plain server-rendered HTML with no script at all; every value from the store is
escaped. The trace page reuses the notebook renderer, so both views always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from urllib.parse import quote, urlencode

from lunatrace.core.events import RUN_TYPES
from lunatrace.core.transport.store import TraceSummary
from lunatrace.view.html import STYLE, icon_html, render_html, status_html
from lunatrace.view.model import ERROR, STARTED, SUCCESS, Trace, format_duration

PAGE_SIZE = 25
FILTERS = ("name", "type", "status", "user", "tag")
REFRESH_S = 5  # the interval the refresh link offers
REFRESH_RANGE = (2, 600)  # seconds a ``?refresh=`` may ask for; anything else: no refresh


def refresh_of(params: Mapping[str, Sequence[str]]) -> int | None:
    """The opt-in refresh interval of a page (``?refresh=5``), ``None`` when not asked or
    out of range: the page then never reloads itself."""
    try:
        seconds = int((params.get("refresh") or [""])[0])
    except ValueError:
        return None
    low, high = REFRESH_RANGE
    return seconds if low <= seconds <= high else None


def refresh_toggle(path: str, params: Mapping[str, str], refresh: int | None) -> str:
    """A link that turns the page's self-refresh on (every :data:`REFRESH_S`) or off."""
    if refresh is None:
        target = path + "?" + urlencode({**params, "refresh": str(REFRESH_S)})
        return f'<a class="lt-refresh" href="{_e(target)}">refresh every {REFRESH_S} s</a>'
    target = path + ("?" + urlencode(params) if params else "")
    return (
        f'<span class="lt-refresh">refreshing every {refresh} s</span> '
        f'<a class="lt-refresh" href="{_e(target)}">stop</a>'
    )


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
    refresh: int | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Sequence[str]]) -> ListQuery:
        values = {key: (params.get(key) or [""])[0].strip() or None for key in FILTERS}
        try:
            page = max(1, int((params.get("page") or ["1"])[0]))
        except ValueError:
            page = 1
        return cls(page=page, refresh=refresh_of(params), **values)

    @property
    def filters(self) -> dict[str, str | None]:
        return {key: getattr(self, key) for key in FILTERS}

    @property
    def filtered(self) -> bool:
        return any(self.filters.values())

    def params(self, page: int) -> dict[str, str]:
        """The query string of ``page`` of this list (filters kept, refresh not)."""
        params = {k: v for k, v in self.filters.items() if v}
        if page > 1:
            params["page"] = str(page)
        return params

    def link(self, page: int) -> str:
        params = self.params(page)
        if self.refresh is not None:
            params["refresh"] = str(self.refresh)
        return "/" + ("?" + urlencode(params) if params else "")


def page(title: str, body: str, refresh: int | None = None) -> str:
    """A whole HTML document around ``body``; ``refresh``: it reloads itself every so many
    seconds (a ``<meta>`` refresh: the pages have no script)."""
    reload = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh is not None else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="color-scheme" content="light dark">{reload}'
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
        + (f'<input type="hidden" name="refresh" value="{query.refresh}">' if query.refresh else "")
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
    toggle = refresh_toggle("/", query.params(query.page), query.refresh)
    parts = [f"<h1>Traces</h1>{_filters_form(query)}<p>{toggle}</p>"]
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
    return page("lunatrace · traces", "".join(parts), query.refresh)


def trace_page(trace: Trace, damaged: int = 0, refresh: int | None = None) -> str:
    """A trace's page; ``damaged`` rows of the store that could not be read are said in one
    line; ``refresh``: it reloads itself (a trace still running)."""
    note = (
        f'<p class="lt-muted" role="status">{damaged} damaged event(s) of this trace could not be read '
        "and are left out.</p>"
        if damaged
        else ""
    )
    toggle = refresh_toggle(f"/trace/{quote(trace.id)}", {}, refresh)
    body = f'<p><a href="/">← all traces</a> · {toggle}</p>{note}{render_html(trace, style=False)}'
    return page(f"lunatrace · {trace.name or trace.id}", body, refresh)


def not_found_page(message: str) -> str:
    return page(
        "lunatrace · not found", f'<h1>Not found</h1><p>{_e(message)}</p><p><a href="/">← all traces</a></p>'
    )
