"""A trace as self-contained HTML: for notebooks (``Trace._repr_html_``) and the local viewer.

Everything a trace holds came from the traced application (prompts, documents, tool
results) and is untrusted, so every value and attribute goes through :func:`html.escape`;
the markup contains no script and loads nothing (inline CSS only), so it can be shown
offline, saved, or served under a policy that forbids scripts.

Colours are neutral and partly transparent with ``color: inherit``, so the view reads in
light and dark notebook themes alike; ``prefers-color-scheme`` tunes the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from lunatrace.core.pricing import SOURCE, format_cost
from lunatrace.core.timestamps import format_timestamp
from lunatrace.view.model import ERROR, STARTED, Run, Span, Trace, format_duration
from lunatrace.view.text import plural

# Plain geometric symbols (present in every font, unlike emoji), one colour per type.
ICONS = {
    "llm": ("◆", "#8b5cf6"),
    "chain": ("●", "#64748b"),
    "agent": ("★", "#2563eb"),
    "tool": ("▲", "#d97706"),
    "retriever": ("◉", "#0d9488"),
    "embed": ("◈", "#0891b2"),
    "chat": ("■", "#db2777"),
    "thread": ("≡", "#db2777"),
    "custom-event": ("⚑", "#64748b"),
}
INDENT_PX = 18

STYLE = """
.lt-trace,.lt-vars{--lt-ok:#1f9d55;--lt-err:#d64541;--lt-run:#c98a0b;--lt-line:rgba(127,127,127,.28);
 --lt-soft:rgba(127,127,127,.09);--lt-bar:rgba(70,130,220,.75);--lt-muted:rgba(127,127,127,.95)}
.lt-trace{font:13px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:inherit;max-width:100%;
 border:1px solid var(--lt-line);border-radius:8px;padding:10px 12px;box-sizing:border-box}
@media (prefers-color-scheme:dark){.lt-trace,.lt-vars{--lt-ok:#3fcf7f;--lt-err:#ff6b66;--lt-run:#f0b43c;
 --lt-bar:rgba(110,165,255,.8)}}
.lt-trace *{box-sizing:border-box}
.lt-head{display:flex;flex-wrap:wrap;gap:4px 14px;align-items:baseline;margin-bottom:8px}
.lt-title{font-weight:600;font-size:15px}
.lt-muted,.lt-id{color:var(--lt-muted)}
.lt-id{font:11px ui-monospace,SFMono-Regular,Menlo,monospace}
.lt-status{display:inline-block;padding:0 6px;border-radius:9px;font-size:11px;font-weight:600;
 border:1px solid currentColor}
.lt-success{color:var(--lt-ok)}.lt-error{color:var(--lt-err)}.lt-started{color:var(--lt-run)}
.lt-badge{margin-left:6px;padding:0 6px;border-radius:9px;font-size:11px;border:1px solid currentColor;
 color:var(--lt-run);text-decoration:none}.lt-badge-cancelled{color:rgba(127,127,127,.95)}
.lt-badge-resumes{color:inherit}
.lt-run{border-top:1px solid var(--lt-line)}
.lt-run>summary{list-style:none;cursor:pointer;display:grid;align-items:center;gap:8px;padding:3px 0;
 grid-template-columns:minmax(0,1fr) 5.5em 4.5em 7.5em 28%}
.lt-run>summary::-webkit-details-marker{display:none}
.lt-run>summary:hover{background:var(--lt-soft)}
.lt-label{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.lt-type{font-size:11px;color:var(--lt-muted);margin:0 4px}
.lt-name{font-weight:600}
.lt-icon{display:inline-block;width:1.2em;text-align:center}
.lt-num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.lt-bar{position:relative;height:10px;background:var(--lt-soft);border-radius:3px}
.lt-bar>span{position:absolute;top:0;bottom:0;min-width:2px;border-radius:3px;background:var(--lt-bar)}
.lt-bar>span.lt-b-error{background:var(--lt-err)}
.lt-bar>span.lt-b-started{background:var(--lt-run);opacity:.6}
.lt-body{padding:4px 0 8px;display:grid;gap:6px}
.lt-sec>b{display:block;font-size:11px;text-transform:uppercase;letter-spacing:.04em;color:var(--lt-muted)}
.lt-pre{margin:2px 0 0;padding:6px 8px;background:var(--lt-soft);border-radius:6px;white-space:pre-wrap;
 word-break:break-word;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;
 max-height:28em;overflow:auto}
.lt-msg{margin:3px 0;padding:5px 8px;border-left:3px solid var(--lt-line);background:var(--lt-soft);
 border-radius:0 6px 6px 0}
.lt-msg.lt-r-user{border-left-color:rgba(70,130,220,.8)}
.lt-msg.lt-r-assistant{border-left-color:var(--lt-ok)}
.lt-msg.lt-r-system{border-left-color:var(--lt-muted)}
.lt-msg.lt-r-tool{border-left-color:var(--lt-run)}
.lt-msg.lt-doc{border-left-color:#0d9488}
.lt-role{font-size:11px;font-weight:600;text-transform:uppercase;color:var(--lt-muted)}
.lt-text{white-space:pre-wrap;word-break:break-word}
.lt-call{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;margin-top:3px;white-space:pre-wrap;
 word-break:break-word}
.lt-call>.lt-fn{font-weight:700}
.lt-chips{display:flex;flex-wrap:wrap;gap:4px}
.lt-chip{font-size:11px;padding:0 6px;border-radius:9px;background:var(--lt-soft);
 border:1px solid var(--lt-line)}
.lt-empty{color:var(--lt-muted);padding:8px 0}
.lt-facts{font-size:12px;color:var(--lt-muted)}
.lt-cost{font-variant-numeric:tabular-nums}.lt-estimate{text-decoration:underline dotted;cursor:help}
a.lt-name{color:inherit;text-decoration:none}a.lt-name:hover,a.lt-name:focus{text-decoration:underline}
.lt-run[aria-current]>summary{background:rgba(70,130,220,.16);box-shadow:inset 3px 0 0 rgba(70,130,220,.9)}
.lt-panel{border:1px solid var(--lt-line);border-radius:8px;padding:10px 12px;font:13px/1.45 system-ui,
 -apple-system,"Segoe UI",sans-serif}
.lt-panel h2{font-size:15px;margin:0 0 4px}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, indent=2, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _pre(value: Any) -> str:
    text = value if isinstance(value, str) else _json(value)
    return f'<pre class="lt-pre">{_e(text)}</pre>'


def _is_message(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("role"), str)
        and ("content" in value or "tool_calls" in value or "toolCalls" in value)
    )


def _content_text(content: Any) -> str:
    """Message content as text: parts joined, images and other parts named."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        pieces = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                pieces.append(str(part.get("text", "")))
            elif isinstance(part, Mapping) and part.get("type") == "image_url":
                pieces.append("[image]")
            else:
                pieces.append(part if isinstance(part, str) else _json(part))
        return "\n".join(pieces)
    return _json(content)


def _arguments(raw: Any) -> str:
    """Tool-call arguments pretty-printed when they are a JSON string."""
    if isinstance(raw, str):
        try:
            return _json(json.loads(raw))
        except ValueError:
            return raw
    return _json(raw)


def _call(name: Any, arguments: Any, call_id: Any = None, error: Any = None) -> str:
    """One tool call; a call the model got wrong shows its parse error after it."""
    ident = f' <span class="lt-muted">#{_e(call_id)}</span>' if call_id else ""
    failure = f' <span class="lt-error">invalid: {_e(error)}</span>' if error else ""
    return (
        f'<div class="lt-call">→ <span class="lt-fn">{_e(name)}</span>'
        f"({_e(_arguments(arguments))}){ident}{failure}</div>"
    )


def _tool_calls(message: Mapping[str, Any]) -> str:
    calls = message.get("tool_calls") or message.get("toolCalls") or []
    out = []
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, Mapping):
            continue
        function = call.get("function")
        if isinstance(function, Mapping):
            out.append(
                _call(function.get("name"), function.get("arguments"), call.get("id"), call.get("error"))
            )
        else:
            out.append(_call(call.get("name"), call.get("args", call.get("arguments")), call.get("id")))
    return "".join(out)


def _message(message: Mapping[str, Any]) -> str:
    role = str(message.get("role"))
    label = role
    for key in ("name", "tool_call_id", "toolCallId"):
        if message.get(key):
            label += f" · {message[key]}"
    text = _content_text(message.get("content"))
    body = f'<div class="lt-text">{_e(text)}</div>' if text else ""
    role_class = _e(role.lower().replace(" ", "-"))
    return (
        f'<div class="lt-msg lt-r-{role_class}"><div class="lt-role">{_e(label)}</div>'
        f"{body}{_tool_calls(message)}</div>"
    )


def _is_document(value: Any) -> bool:
    """A retrieved document as the integrations record it (``content`` or ``text``, no role)."""
    return (
        isinstance(value, Mapping)
        and "role" not in value
        and isinstance(value.get("content", value.get("text")), str)
    )


def _document(document: Mapping[str, Any]) -> str:
    label = document.get("title") or document.get("source") or document.get("id") or "document"
    score = document.get("score")
    if isinstance(score, int | float) and not isinstance(score, bool):
        label = f"{label} · score {score:.3g}"
    text = document.get("content", document.get("text"))
    metadata = document.get("metadata")
    extra = f'<div class="lt-muted">{_e(_json(metadata))}</div>' if metadata else ""
    return (
        f'<div class="lt-msg lt-doc"><div class="lt-role">{_e(label)}</div>'
        f'<div class="lt-text">{_e(text)}</div>{extra}</div>'
    )


def render_value(value: Any) -> str:
    """Chat messages as messages, a message list as a conversation, retrieved documents as
    documents, anything else as text or JSON."""
    if _is_message(value):
        return _message(value)
    if isinstance(value, list) and value and all(_is_message(v) for v in value):
        return "".join(_message(v) for v in value)
    if isinstance(value, list) and value and all(_is_document(v) for v in value):
        return "".join(_document(v) for v in value)
    if isinstance(value, Mapping) and isinstance(value.get("messages"), list):
        messages = value["messages"]
        if messages and all(_is_message(v) for v in messages):
            rest = {k: v for k, v in value.items() if k != "messages"}
            return "".join(_message(v) for v in messages) + (_pre(rest) if rest else "")
    return _pre(value)


def _section(title: str, body: str) -> str:
    return f'<div class="lt-sec"><b>{_e(title)}</b>{body}</div>'


def _chips(values: Sequence[Any]) -> str:
    return (
        '<div class="lt-chips">' + "".join(f'<span class="lt-chip">{_e(v)}</span>' for v in values) + "</div>"
    )


def _body(run: Run, parent_user: str | None) -> str:
    """The expandable part: inputs, outputs, error, feedback, params; the user where it changes."""
    sections = [_facts(run)]
    if run.type == "tool" and run.input is not None:
        sections.append(_section("call", _call(run.name, run.input)))
    elif run.input is not None:
        sections.append(_section("input", render_value(run.input)))
    if run.output is not None:
        sections.append(_section("output", render_value(run.output)))
    if run.error:
        message = run.error.get("message", "")
        stack = run.error.get("stack") or ""
        sections.append(_section("error", f'<pre class="lt-pre lt-error">{_e(message)}\n\n{_e(stack)}</pre>'))
    if run.feedback:
        sections.append(_section("feedback", _chips([f"{k}: {v}" for k, v in run.feedback.items()])))
    if run.params:
        sections.append(_section("params", _pre(run.params)))
    if run.tags:
        sections.append(_section("tags", _chips(run.tags)))
    if run.user_id and run.user_id != parent_user:
        props = f" {_json(run.user_props)}" if run.user_props else ""
        sections.append(_section("user", f'<div class="lt-text">{_e(run.user_id + props)}</div>'))
    if run.metadata:
        sections.append(_section("metadata", _pre(run.metadata)))
    ident = f'<div class="lt-id">run {_e(run.id)}</div>'
    return f'<div class="lt-body">{"".join(sections)}{ident}</div>'


def cost_html(cost: float, estimated: bool) -> str:
    """``~$0.0012`` saying, on hover and to a screen reader, that it is an estimate and from what."""
    title = f"estimated from {SOURCE}" if estimated else "set by the application (metadata.cost)"
    kind = " lt-estimate" if estimated else ""
    return f'<span class="lt-cost{kind}" title="{_e(title)}">{_e(format_cost(cost, estimated))}</span>'


def _facts(run: Run) -> str:
    """Duration, the token split and the cost, spelled out (the row only has room for totals)."""
    facts = [f"duration {format_duration(run.duration_ms)}"] if run.status != STARTED else ["still running"]
    if run.tokens:
        estimated = " (estimated)" if run.tokens_estimated else ""
        facts.append(
            f"tokens {run.tokens.get('prompt', 0)} prompt + {run.tokens.get('completion', 0)} completion"
            f"{estimated}"
        )
    line = " · ".join(_e(f) for f in facts)
    if run.cost is not None:
        source = f" (estimated from {SOURCE})" if run.cost_estimated else " (metadata.cost)"
        line += f" · cost {cost_html(run.cost, run.cost_estimated)}{_e(source)}"
    return f'<div class="lt-facts">{line}</div>'


def tokens_html(tokens: Mapping[str, int], estimated: bool = False) -> str:
    if not tokens:
        return ""
    total = int(tokens.get("prompt", 0)) + int(tokens.get("completion", 0))
    title = f"prompt {tokens.get('prompt', 0)} + completion {tokens.get('completion', 0)}"
    if tokens.get("promptCached"):
        title += f", {tokens['promptCached']} cached"
    if estimated:
        title += " (estimated)"
    return f'<span title="{_e(title)}">{"~" if estimated else ""}{total} tok</span>'


def icon_html(run_type: str) -> str:
    symbol, colour = ICONS.get(run_type, ("•", "#64748b"))
    return f'<span class="lt-icon" style="color:{colour}" title="{_e(run_type)}">{symbol}</span>'


def status_html(status: str) -> str:
    return f'<span class="lt-status lt-{_e(status)}">{_e(status)}</span>'


def _label(run: Run, indent_px: int = 0, href: str | None = None) -> str:
    name = run.name
    if run.type == "chat":
        message = run.input if run.input is not None else run.output
        if isinstance(message, Mapping):
            name = f"{run.name}: {_content_text(message.get('content'))[:80]}"
    cost = f" {cost_html(run.cost, run.cost_estimated)}" if run.cost is not None else ""
    badge = _badge(run)
    if run.resumes:
        badge += f' <a class="lt-badge lt-badge-resumes" href="#run-{_e(run.parent_id)}">resumes ↑</a>'
    return (
        f'<span class="lt-label" style="padding-left:{indent_px}px">{icon_html(run.type)}'
        f'<span class="lt-type">{_e(run.type)}</span>{_name(name, href)}'
        f"{cost}{badge}</span>"
    )


def _badge(run: Run) -> str:
    return f' <span class="lt-badge lt-badge-{_e(run.badge)}">{_e(run.badge)}</span>' if run.badge else ""


def _name(name: str, href: str | None) -> str:
    """The run's name; on the viewer's trace page a link that opens it in the side panel."""
    if href is None:
        return f'<span class="lt-name">{_e(name)}</span>'
    return f'<a class="lt-name" href="{_e(href)}" title="show its details beside the tree">{_e(name)}</a>'


def _bar(span: Span, run: Run) -> str:
    offset, width = span.place(run)
    kind = " lt-b-error" if run.status == ERROR else (" lt-b-started" if run.status == STARTED else "")
    title = f"starts +{format_duration(span.offset_ms(run))}, lasts {format_duration(run.duration_ms)}"
    return (
        f'<span class="lt-bar" title="{_e(title)}"><span class="lt-b{kind}" '
        f'style="left:{offset * 100:.2f}%;width:{width * 100:.2f}%"></span></span>'
    )


def _parent_user(trace: Trace, run: Run) -> str | None:
    parent = trace.runs.get(run.parent_id) if run.parent_id else None
    return parent.user_id if parent is not None else None


def _run_row(trace: Trace, span: Span, run: Run, depth: int, links: RunLinks | None) -> str:
    opened = " open" if run.status == ERROR else ""
    selected = links is not None and links.selected == run.id
    marks = ' aria-current="true"' if selected else ""
    href = links.href(run.id) if links is not None else None
    return (
        f'<details class="lt-run" data-run-id="{_e(run.id)}" data-run-type="{_e(run.type)}"'
        f' data-status="{_e(run.status)}" id="run-{_e(run.id)}"{marks}{opened}>'
        # Only the label is indented, so status, duration, tokens and the timeline stay
        # in aligned columns at every depth.
        f"<summary>{_label(run, depth * INDENT_PX, href)}"
        f"<span>{status_html(run.status)}</span>"
        f'<span class="lt-num">{_e(format_duration(run.duration_ms))}</span>'
        f'<span class="lt-num">{tokens_html(run.tokens, run.tokens_estimated)}</span>'
        f"{_bar(span, run)}</summary>"
        f'<div style="padding-left:{depth * INDENT_PX + 22}px">{_body(run, _parent_user(trace, run))}</div>'
        "</details>"
    )


@dataclass(frozen=True)
class RunLinks:
    """How the viewer's trace page links each run to the side panel, and which run it shows."""

    href: Callable[[str], str]  # run id -> the page showing that run in the panel
    selected: str | None = None


def run_panel(trace: Trace, run: Run) -> str:
    """A run's details (facts, input, output, error, params, metadata) for the panel beside
    the tree: the same sections as the row's inline details."""
    badge = _badge(run)
    return (
        '<aside class="lt-panel" id="run-panel" aria-labelledby="run-panel-title"'
        f' data-run-id="{_e(run.id)}">'
        f'<h2 id="run-panel-title">{icon_html(run.type)} <span class="lt-type">{_e(run.type)}</span>'
        f"{_e(run.name)}</h2><div>{status_html(run.status)}{badge}</div>"
        f"{_below(run)}{_body(run, _parent_user(trace, run))}</aside>"
    )


def _below(run: Run) -> str:
    """The totals of a run with children, itself included: what a chain or agent spent."""
    if not run.children:
        return ""
    runs = [r for r, _ in run.walk()]
    tokens: dict[str, int] = {}
    for r in runs:
        for key in ("prompt", "completion"):
            tokens[key] = tokens.get(key, 0) + int(r.tokens.get(key, 0))
    costs = [(r.cost, r.cost_estimated) for r in runs if r.cost is not None]
    facts = [_e(plural(len(runs), "run"))]
    if any(tokens.values()):
        facts.append(f"tokens {tokens['prompt']} prompt + {tokens['completion']} completion")
    if costs:
        total = sum(c for c, _ in costs)
        facts.append(f"cost {cost_html(total, any(e for _, e in costs))}")
    return f'<div class="lt-facts lt-below">with everything below it: {" · ".join(facts)}</div>'


def _header(trace: Trace, span: Span) -> str:
    facts = [
        status_html(trace.status),
        f"<span>{_e(format_duration(span.duration_ms))}</span>",
        f'<span class="lt-muted">{plural(len(trace.runs), "run")}</span>',
    ]
    if trace.llm_calls:
        facts.append(f'<span class="lt-muted">{plural(trace.llm_calls, "llm call")}</span>')
    if trace.tokens:
        facts.append(f'<span class="lt-muted">{tokens_html(trace.tokens)}</span>')
    if trace.cost is not None:
        facts.append(cost_html(trace.cost, trace.cost_estimated))
    if trace.errors:
        facts.append(f'<span class="lt-error">{plural(trace.errors, "error")}</span>')
    if trace.user_id:
        facts.append(f'<span class="lt-muted">user {_e(trace.user_id)}</span>')
    if span.start_ms is not None:
        facts.append(f'<span class="lt-muted">{_e(format_timestamp(span.start_ms))}</span>')
    return (
        f'<div class="lt-head"><span class="lt-title">{icon_html(trace.type)} '
        f"{_e(trace.name or '(empty trace)')}</span>"
        f'{"".join(facts)}<span class="lt-id">trace {_e(trace.id)}</span></div>'
    )


def render_html(trace: Trace, *, style: bool = True, links: RunLinks | None = None) -> str:
    """The trace as an HTML fragment (one ``<div>``, with its ``<style>`` unless ``style=False``);
    ``links``: each run's name links to its details in the viewer's side panel.

    The trace's span is taken once for all rows: each run's bar is placed against it, and
    taking it per row made rendering quadratic in the number of runs.
    """
    span = trace.span()
    rows = "".join(_run_row(trace, span, run, depth, links) for run, depth in trace.walk())
    if not rows:
        rows = '<div class="lt-empty">This trace has no runs.</div>'
    css = f"<style>{STYLE}</style>" if style else ""
    return f'<div class="lt-trace" data-trace-id="{_e(trace.id)}">{css}{_header(trace, span)}{rows}</div>'
