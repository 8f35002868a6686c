"""A trace as a tree of text lines, for terminals (``lunatrace show``, the demo).

Traced values are untrusted: a prompt can hold terminal escape sequences that would
rewrite the screen, so every control character is replaced before printing.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from lunatrace.core.pricing import SOURCE, format_cost
from lunatrace.view.model import ERROR, STARTED, SUCCESS, Run, Trace, format_duration

STATUS_MARK = {SUCCESS: "✓", ERROR: "✗", STARTED: "…"}
BADGE_MARK = {"interrupted": "⏸", "cancelled": "⊘"}
PREVIEW_CHARS = 120
ESTIMATE_NOTE = f"~$: estimated from {SOURCE}: what Lunary would charge (metadata.cost overrides it)"
MAX_GUIDES = 24  # levels of tree guides drawn on a line; deeper lines fold the outer ones
FOLD_LEVELS = 12  # folded at a time, so lines stay aligned for that many levels
_GUIDE, _SPACE = "│  ", "   "
_WIDTH = len(_GUIDE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """``text`` safe to print: control characters (escape sequences) shown as ``?``."""
    return _CONTROL.sub("?", text)


def value_text(value: Any) -> str:
    """A traced value as compact text: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """One line of at most ``limit`` characters."""
    text = " ".join(clean(value_text(value)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tokens_text(tokens: dict[str, int], estimated: bool = False) -> str:
    """``tokens 12+5`` (prompt + completion), ``~`` marking a local estimate."""
    if not tokens:
        return ""
    prompt, completion = tokens.get("prompt", 0), tokens.get("completion", 0)
    return f"tokens {'~' if estimated else ''}{prompt}+{completion}"


def run_line(run: Run) -> str:
    """``type name  ✓ success  12ms  tokens 12+5``: the summary of one run."""
    label = f"{run.type} {preview(run.name, 200)}"
    if run.type == "chat":
        message = run.input if run.input is not None else run.output
        if isinstance(message, dict):
            label += ": " + preview(message.get("content"), 60)
    parts = [label, f"{STATUS_MARK.get(run.status, '?')} {run.status}"]
    if run.badge is not None:
        parts.append(f"{BADGE_MARK[run.badge]} {run.badge}")
    if run.resumes:
        parts.append(f"↩ resumes {run.parent_id}")
    if run.status != STARTED:
        parts.append(format_duration(run.duration_ms))
    tokens = tokens_text(run.tokens, run.tokens_estimated)
    if tokens:
        parts.append(tokens)
    if run.cost is not None:
        parts.append(format_cost(run.cost, run.cost_estimated))
    if run.feedback:
        parts.append("feedback " + preview(run.feedback, 60))
    return "  ".join(parts)


def _details(run: Run, full: bool) -> list[str]:
    lines: list[str] = []
    if run.error:
        message = run.error.get("message") if hasattr(run.error, "get") else run.error
        lines.append("error: " + preview(message, 200))
    for label, value in (("input", run.input), ("output", run.output)):
        if value is None or (run.type == "chat" and not full):  # the label shows the message
            continue
        if full:
            text = full_text(value)
            lines.extend(f"{label}:{text if text.startswith(chr(10)) else ' ' + text}".splitlines())
        else:
            lines.append(f"{label}: {preview(value, PREVIEW_CHARS - len(label) - 2)}")
    if run.user_id and run.parent_id is None:  # children inherit it
        lines.append(f"user: {clean(run.user_id)}")
    if run.tags:
        lines.append("tags: " + preview(", ".join(str(tag) for tag in run.tags), 200))
    shown = {k: v for k, v in run.metadata.items() if k not in _BOOKKEEPING}
    if shown:
        lines.extend(
            ("metadata: " + (full_text(shown) if full else preview(shown, PREVIEW_CHARS - 10))).splitlines()
        )
    if full and run.error and run.error.get("stack"):
        lines.extend(clean(str(run.error["stack"])).rstrip().splitlines())
    return lines


# Metadata the run line already says (estimated tokens, cost) is not repeated under it.
_BOOKKEEPING = frozenset({"tokensEstimated", "cost"})


def full_text(value: Any) -> str:
    """A value in full, readable: a prompt's messages one per line as ``role: text`` with
    their line breaks kept, text as text, anything else as indented JSON."""
    messages = value if isinstance(value, list) else [value]
    if messages and all(_is_message(m) for m in messages):
        return "\n" + "\n".join(_message_text(m) for m in messages)
    if isinstance(value, str):
        return clean_lines(value)
    try:
        return clean_lines(json.dumps(value, ensure_ascii=False, indent=2, default=str))
    except (TypeError, ValueError):
        return clean(repr(value))


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("role"), str) and "content" in value


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    text = content if isinstance(content, str) else value_text(content) if content is not None else ""
    calls = message.get("tool_calls") or message.get("toolCalls") or []
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            text += f"\n→ {function.get('name')}({function.get('arguments')})"
    return f"[{clean(str(message['role']))}] {clean_lines(text)}".rstrip()


def clean_lines(text: str) -> str:
    """``text`` safe to print, its line breaks (and tabs) kept."""
    return "\n".join(clean(line.replace("\t", "    ")) for line in text.splitlines())


def plural(count: int, noun: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def header(trace: Trace) -> str:
    """The trace's one-line summary."""
    parts = [
        f"trace {trace.id}",
        f"{STATUS_MARK.get(trace.status, '?')} {trace.status}",
        format_duration(trace.duration_ms),
        plural(len(trace.runs), "run"),
    ]
    if trace.llm_calls:
        parts.append(plural(trace.llm_calls, "llm call"))
    tokens = tokens_text(trace.tokens, trace.tokens_estimated)
    if tokens:
        parts.append(tokens)
    if trace.cost is not None:
        parts.append(f"cost {format_cost(trace.cost, trace.cost_estimated)}")
    if trace.user_id:
        parts.append(f"user {clean(trace.user_id)}")
    return "  ".join(parts)


def render_text(trace: Trace, full: bool = False) -> str:
    """The trace as a tree: one line per run, with its error and a one-line preview of
    its input and output under it.

    ``full`` shows every input, output and error stack uncut instead.
    """
    lines = [header(trace)]
    for index, root in enumerate(trace.roots):
        _render(root, _Indent(), index == len(trace.roots) - 1, full, lines)
    if not trace.roots:
        lines.append("(no runs)")
    if trace.cost_estimated:
        lines.append(ESTIMATE_NOTE)
    return "\n".join(lines)


class _Indent(NamedTuple):
    """The guides drawn left of a line: at most ``MAX_GUIDES`` levels, the outer ones of a
    deeper line folded into a ``(+N)`` mark.

    Bounding them keeps each line's cost constant: drawing every level made a chain of
    runs N deep cost N² characters, and no terminal is that wide anyway.
    """

    guides: str = ""
    folded: int = 0

    def deeper(self, last: bool) -> _Indent:
        guides = self.guides + (_SPACE if last else _GUIDE)
        if len(guides) > MAX_GUIDES * _WIDTH:
            return _Indent(guides[FOLD_LEVELS * _WIDTH :], self.folded + FOLD_LEVELS)
        return _Indent(guides, self.folded)

    def __str__(self) -> str:
        return (f"(+{self.folded}) " if self.folded else "") + self.guides


def _render(run: Run, indent: _Indent, last: bool, full: bool, lines: list[str]) -> None:
    # An explicit stack rather than recursion: traces can be thousands of runs deep.
    stack: list[tuple[Run, _Indent, bool]] = [(run, indent, last)]
    while stack:
        current, pad, is_last = stack.pop()
        lines.append(f"{pad}{'└─ ' if is_last else '├─ '}{run_line(current)}")
        child_pad = pad.deeper(is_last)
        detail_pad = f"{child_pad}{_GUIDE if current.children else _SPACE}"
        lines.extend(detail_pad + d for d in _details(current, full))
        count = len(current.children)
        for i, child in reversed(list(enumerate(current.children))):
            stack.append((child, child_pad, i == count - 1))
