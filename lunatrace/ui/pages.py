"""The local viewer's pages: the trace list (filters, pagination, empty state) and a trace.

Pages are plain server-rendered HTML with no script at all; every value from the store is
escaped. The trace page reuses the notebook renderer, so both views always agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from lunatrace.core.events import RUN_TYPES
from lunatrace.core.pricing import SOURCE
from lunatrace.core.transport.store import TraceSummary
from lunatrace.view.html import STYLE, RunLinks, cost_html, icon_html, render_html, run_panel, status_html
from lunatrace.view.model import ERROR, STARTED, SUCCESS, Trace, format_duration
from lunatrace.view.text import plural
from lunatrace.view.when import parse_when

PAGE_SIZE = 25
FILTERS = ("q", "since", "until", "errors", "name", "type", "status", "user", "tag")
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
form.lt-filters input.lt-search{width:30em;max-width:70vw}
form.lt-filters .lt-break{flex-basis:100%;height:0}
form.lt-filters button{padding:3px 14px}
table.lt-list td.lt-tname{white-space:nowrap}
form.lt-filters label.lt-check{display:flex;gap:4px;align-items:center;padding-bottom:4px}
.lt-problem{color:#d64541}
main:has(.lt-split),main:has(table.lt-list){max-width:1700px}
table.lt-list td.lt-when{white-space:nowrap;font-variant-numeric:tabular-nums}
table.lt-list td.lt-tname a{font-weight:600}
table.lt-list td.lt-tname .lt-type{font-size:11px;color:rgba(127,127,127,.95);margin-left:1.2em}
table.lt-list td.lt-io{max-width:24em;font-size:12px}
table.lt-list td.lt-io>div{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
table.lt-list td.lt-io .lt-out{color:rgba(127,127,127,.95)}
table.lt-list td.lt-io .lt-out.lt-error{color:#d64541}
table.lt-list th.lt-n{text-align:right}
table.lt-list th .lt-unit{font-size:10px;text-transform:none;font-weight:400}
table.lt-list td.lt-n{white-space:nowrap}
.lt-split{display:grid;grid-template-columns:minmax(0,1fr) minmax(320px,36%);gap:14px;align-items:start}
.lt-split>.lt-panel{position:sticky;top:8px;max-height:calc(100vh - 16px);overflow:auto}
@media (max-width:900px){.lt-split{grid-template-columns:minmax(0,1fr)}.lt-split>.lt-panel{position:static}}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


@dataclass(frozen=True)
class ListQuery:
    """The trace list's filters and page, parsed from the query string."""

    q: str | None = None  # free-text search
    since: str | None = None  # as typed: ``2h``, ``2026-12-01``... (see lunatrace.view.when)
    until: str | None = None
    errors: str | None = None  # "1": only traces with an error
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
        """The query string's filters, as typed."""
        return {key: getattr(self, key) for key in FILTERS}

    @property
    def filtered(self) -> bool:
        return any(self.filters.values())

    def store_filters(self, now_ms: int | None = None) -> tuple[dict[str, Any], list[str]]:
        """The filters as the store reads them, and what could not be read (a time that
        does not parse is said on the page and left out, not an error page)."""
        problems = []
        times: dict[str, int | None] = {}
        for key in ("since", "until"):
            text = getattr(self, key)
            try:
                times[key] = None if text is None else parse_when(text, now_ms)
            except ValueError as exc:
                times[key] = None
                problems.append(f"{key}: {exc}")
        filters: dict[str, Any] = {
            key: getattr(self, key) for key in ("name", "type", "status", "user", "tag")
        }
        filters.update(
            search=self.q, since_ms=times["since"], until_ms=times["until"], errors=bool(self.errors)
        )
        return filters, problems

    def params(self, page: int) -> dict[str, str]:
        """The query string of ``page`` of this list (filters kept, refresh not)."""
        params = {k: v for k, v in self.filters.items() if v}
        if page > 1:
            params["page"] = str(page)
        return params

    @property
    def origin(self) -> dict[str, str]:
        """What a trace opened from this list carries back to it (``?from=``): its filters
        and page, so that "← all traces" returns to the same list."""
        params = self.params(self.page)
        return {"from": urlencode(params)} if params else {}

    @classmethod
    def of_origin(cls, params: Mapping[str, Sequence[str]]) -> ListQuery:
        """The list a trace page was opened from (its ``?from=``), else the whole list."""
        return cls.parse(parse_qs((params.get("from") or [""])[0]))

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


def _text_input(
    name: str, current: str | None, label: str | None = None, attributes: Mapping[str, str] | None = None
) -> str:
    extra = "".join(f' {key}="{_e(value)}"' for key, value in (attributes or {}).items())
    return f'<label>{_e(label or name)}<input name="{_e(name)}" value="{_e(current or "")}"{extra}></label>'


_SEARCH_BOX = {
    "type": "search",
    "id": "search",
    "class": "lt-search",
    "placeholder": "names, inputs, outputs, errors, tags, metadata",
}


def _filters_form(query: ListQuery, problems: Sequence[str]) -> str:
    checked = " checked" if query.errors else ""
    said = "".join(f'<p class="lt-problem" role="alert">{_e(p)}</p>' for p in problems)
    return (
        '<form class="lt-filters" method="get" action="/" role="search">'
        + _text_input("q", query.q, "search", _SEARCH_BOX)
        + _text_input("since", query.since, None, {"placeholder": "e.g. 2h, 2026-12-01", "size": "14"})
        + _text_input("until", query.until, None, {"placeholder": "e.g. 30m, 2026-12-02", "size": "14"})
        + '<label class="lt-check"><input type="checkbox" name="errors" value="1"'
        + f"{checked}>with errors</label>"
        + '<button type="submit">Search</button>'
        + ('<a href="/">clear</a>' if query.filtered else "")
        + '<span class="lt-break"></span>'
        + _text_input("name", query.name)
        + _select("type", sorted(RUN_TYPES), query.type)
        + _select("status", (SUCCESS, ERROR, STARTED), query.status)
        + _text_input("user", query.user, None, {"size": "10"})
        + _text_input("tag", query.tag, None, {"size": "10"})
        + (f'<input type="hidden" name="refresh" value="{query.refresh}">' if query.refresh else "")
        + "</form>"
        + said
    )


def _preview(summary: TraceSummary) -> str:
    """What went in and what came out, one line each (cut by CSS to the cell's width)."""
    parts = []
    if summary.input_preview:
        parts.append(
            f'<div class="lt-in" title="{_e(summary.input_preview)}">{_e(summary.input_preview)}</div>'
        )
    if summary.output_preview:
        kind = " lt-error" if summary.status == ERROR else ""
        shown = _e(summary.output_preview)
        parts.append(f'<div class="lt-out{kind}" title="{shown}">→ {shown}</div>')
    return "".join(parts) or '<span class="lt-muted">-</span>'


def _tokens(summary: TraceSummary) -> str:
    if not summary.tokens:
        return ""
    title = f"prompt {summary.prompt_tokens} + completion {summary.completion_tokens} tokens"
    return f'<span title="{_e(title)}">{summary.prompt_tokens} + {summary.completion_tokens}</span>'


def _row(summary: TraceSummary, origin: Mapping[str, str]) -> str:
    started = (summary.started_at or "").replace("T", " ").removesuffix("Z")[:19]
    duration = None if summary.duration_ms is None else int(summary.duration_ms)
    tags = " ".join(f'<span class="lt-chip">{_e(t)}</span>' for t in summary.tags)
    link = _e(f"/trace/{quote(summary.trace_id)}" + (f"?{urlencode(origin)}" if origin else ""))
    cost = "" if summary.cost is None else cost_html(summary.cost, summary.cost_estimated)
    return (
        f'<tr data-trace-id="{_e(summary.trace_id)}"><td class="lt-when">{_e(started)}</td>'
        f'<td class="lt-tname">{icon_html(summary.type or "")}<a href="{link}">'
        f"{_e(summary.name or summary.trace_id)}</a>"
        f'<div class="lt-type">{_e(summary.type or "")}</div></td>'
        f'<td class="lt-io">{_preview(summary)}</td>'
        f"<td>{status_html(summary.status)}</td>"
        f'<td class="lt-n">{_e(format_duration(duration))}</td>'
        f'<td class="lt-n">{summary.llm_calls}</td><td class="lt-n lt-tokens">{_tokens(summary)}</td>'
        f'<td class="lt-n lt-costcell">{cost}</td>'
        f'<td class="lt-n">{summary.errors}</td><td>{_e(summary.user_id or "")}</td><td>{tags}</td></tr>'
    )


_HEADINGS = (  # (heading, its class, a second line saying what it counts)
    ("started (UTC)", "", ""),
    ("name", "", ""),
    ("input → output", "", ""),
    ("status", "", ""),
    ("duration", "lt-n", ""),
    ("llm", "lt-n", "calls"),
    ("tokens", "lt-n", "prompt + completion"),
    ("cost", "lt-n", "USD"),
    ("errors", "lt-n", ""),
    ("user", "", ""),
    ("tags", "", ""),
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


def _heading(text: str, cls: str, note: str) -> str:
    small = f'<br><small class="lt-unit">{_e(note)}</small>' if note else ""
    attribute = f' class="{cls}"' if cls else ""
    return f"<th{attribute}>{_e(text)}{small}</th>"


def list_page(
    summaries: Sequence[TraceSummary],
    total: int,
    query: ListQuery,
    store_path: Path,
    store_total: int,
    problems: Sequence[str] = (),
) -> str:
    """The trace list, newest first, or an empty state; ``problems``: filters that could
    not be read, said above the list."""
    if store_total == 0:
        return page("lunatrace · traces", empty_state(store_path))
    pages = max(1, -(-total // PAGE_SIZE))
    toggle = refresh_toggle("/", query.params(query.page), query.refresh)
    parts = [f"<h1>Traces</h1>{_filters_form(query, problems)}<p>{toggle}</p>"]
    if not summaries:
        parts.append(
            '<p class="lt-empty" id="no-match">No traces match these filters. <a href="/">Show all</a></p>'
        )
    else:
        head = "".join(_heading(*h) for h in _HEADINGS)
        parts.append(
            f'<table class="lt-list"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(_row(s, query.origin) for s in summaries)
            + "</tbody></table>"
        )
    if any(s.cost_estimated for s in summaries):
        parts.append(
            f'<p class="lt-muted lt-note">~$: estimated from {_e(SOURCE)}: what Lunary would charge.</p>'
        )
    if query.page > pages:
        parts.append(
            f'<p class="lt-empty" id="past-the-end">Page {query.page} is past the last page ({pages}). '
            f'<a href="{_e(query.link(pages))}">Go to page {pages}</a></p>'
        )
    shown_page = min(query.page, pages)
    pager = [f"<span>page {shown_page} of {pages} · {plural(total, 'trace')}</span>"]
    if query.page > 1:
        pager.insert(0, f'<a rel="prev" href="{_e(query.link(query.page - 1))}">← newer</a>')
    if query.page < pages:
        pager.append(f'<a rel="next" href="{_e(query.link(query.page + 1))}">older →</a>')
    parts.append(f'<div class="lt-pager">{"".join(pager)}</div>')
    parts.append(f'<p class="lt-muted">store: <code>{_e(store_path)}</code></p>')
    return page("lunatrace · traces", "".join(parts), query.refresh)


def trace_page(
    trace: Trace,
    damaged: int = 0,
    refresh: int | None = None,
    selected: str | None = None,
    origin: ListQuery | None = None,
) -> str:
    """A trace's page: the tree, and beside it the details of the run ``selected``
    (``?run=``; default: the root), each run's name linking to its own. ``damaged`` rows
    of the store that could not be read are said in one line; ``refresh``: it reloads
    itself (a trace still running), the selection kept; ``origin``: the list it was opened
    from, which "← all traces" returns to (kept by every link of the page)."""
    note = (
        f'<p class="lt-muted" role="status">{damaged} damaged event(s) of this trace could not be read '
        "and are left out.</p>"
        if damaged
        else ""
    )
    path = f"/trace/{quote(trace.id, safe='')}"
    run = trace.runs.get(selected) if selected else trace.root
    if selected and run is None:
        note += f'<p class="lt-problem" role="alert">This trace has no run {_e(selected)}.</p>'
        run = trace.root
    origin = origin or ListQuery()
    kept = {**({"run": selected} if selected else {}), **origin.origin}
    toggle = refresh_toggle(path, kept, refresh)

    def href(run_id: str) -> str:
        params = {
            "run": run_id,
            **origin.origin,
            **({"refresh": str(refresh)} if refresh is not None else {}),
        }
        return f"{path}?{urlencode(params)}#run-{quote(run_id, safe='')}"

    links = RunLinks(href=href, selected=run.id if run is not None else None)
    tree = render_html(trace, style=False, links=links)
    panel = run_panel(trace, run) if run is not None else ""
    body = (
        f'<p><a href="{_e(origin.link(origin.page))}">← all traces</a> · {toggle}</p>{note}'
        f'<div class="lt-split"><div class="lt-tree">{tree}</div>{panel}</div>'
    )
    return page(f"lunatrace · {trace.name or trace.id}", body, refresh)


def not_found_page(message: str) -> str:
    return page(
        "lunatrace · not found", f'<h1>Not found</h1><p>{_e(message)}</p><p><a href="/">← all traces</a></p>'
    )
