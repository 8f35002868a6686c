"""What the store keeps per trace beyond its basic totals: the facts a list shows (an input
and output preview, prompt and completion tokens, cost) and the text search reads.

Both are worked out from wire events, once, when the events are stored (or, for a store
written by an older release, when it is first opened: see ``EventStore.index_pending``),
so listing and searching never parse an event. One function, :func:`facts_of`, does it
for both paths, so a migrated store holds exactly what a new one would.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lunatrace.core.messages import INPUT_ROLES
from lunatrace.core.pricing import LlmCall, cost_of
from lunatrace.core.timestamps import parse_timestamp

PREVIEW_CHARS = 160
TEXT_CHARS = 16_384  # searchable text kept per event: a huge document is searched by its start
_TEXT_FIELDS = ("name", "input", "output", "error", "tags", "threadTags", "metadata", "message")
# Fields that hold what a person typed or read, shown first when a value has several.
_TEXT_KEYS = ("question", "query", "input", "prompt", "text", "content", "answer", "output", "result")


def fts5_available(db: sqlite3.Connection) -> bool:
    """Whether this Python's SQLite has the FTS5 full-text module (almost all builds do)."""
    try:
        db.execute("CREATE VIRTUAL TABLE temp.lunatrace_fts5_probe USING fts5(x)")
        db.execute("DROP TABLE temp.lunatrace_fts5_probe")
        return True
    except sqlite3.OperationalError:
        return False


# A text row's id names its trace: the trace's ``seq`` (the row id of its first event,
# stable: VACUUM keeps an INTEGER PRIMARY KEY) shifted left by this many bits, plus the
# row's number within the trace. A search then reads only the full-text index (the ids
# of matching rows), never a stored column, and joins on an integer.
TEXT_ROW_BITS = 24
MAX_TEXT_ROWS = (1 << TEXT_ROW_BITS) - 1  # a trace's text rows beyond this are not kept


def search_table_sql(fts5: bool) -> str:
    """The search text table: a contentless FTS5 index (it keeps no copy of the text: the
    events hold it), else a plain table scanned with LIKE."""
    if fts5:
        return (
            "CREATE VIRTUAL TABLE IF NOT EXISTS trace_text USING fts5("
            "body, content='', tokenize='unicode61 remove_diacritics 2')"
        )
    return "CREATE TABLE IF NOT EXISTS trace_text (body TEXT NOT NULL)"


def _strings(value: Any, out: list[str], keys: bool = False) -> None:
    """Every string and number in ``value``, depth first (dict keys too when ``keys``)."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, str):
            out.append(current)
        elif isinstance(current, bool) or current is None:
            continue
        elif isinstance(current, int | float):
            out.append(str(current))
        elif isinstance(current, Mapping):
            for key, item in reversed(list(current.items())):
                stack.append(item)
                if keys:
                    stack.append(str(key))
        elif isinstance(current, list | tuple):
            stack.extend(reversed(current))


def search_text(event: Mapping[str, Any]) -> str:
    """The searchable text of an event: names, inputs, outputs, errors, tags, metadata."""
    parts: list[str] = []
    for key in _TEXT_FIELDS:
        value = event.get(key)
        if value is not None:
            _strings(value, parts, keys=key == "metadata")
    return " ".join(parts)[:TEXT_CHARS]


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    calls = message.get("tool_calls") or message.get("toolCalls")
    if isinstance(calls, list) and calls:
        names = [c.get("function", {}).get("name") or c.get("name") for c in calls if isinstance(c, Mapping)]
        return "→ " + ", ".join(str(n) for n in names)
    return ""


def _readable(value: Any) -> Any:
    """The part of a value a person reads first: a message's text, the last message of a
    conversation, the only field of a one-field object."""
    for _ in range(4):  # nested shapes, a few levels deep
        if isinstance(value, Mapping) and isinstance(value.get("role"), str):
            return _message_text(value)
        if isinstance(value, list) and value and all(isinstance(v, Mapping) and "role" in v for v in value):
            value = value[-1]
        elif isinstance(value, Mapping) and isinstance(value.get("messages"), list) and value["messages"]:
            value = value["messages"]
        elif isinstance(value, Mapping) and len(value) == 1:
            value = next(iter(value.values()))
        elif isinstance(value, Mapping) and (key := next((k for k in _TEXT_KEYS if k in value), None)):
            value = value[key]
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return " | ".join(value)
        else:
            break
    return value


def preview(value: Any) -> str | None:
    """One line of at most :data:`PREVIEW_CHARS` characters saying what ``value`` was."""
    if value is None:
        return None
    value = _readable(value)
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    text = " ".join(text.split())
    if not text:
        return None
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _count(usage: Any, key: str) -> int:
    value = usage.get(key) if isinstance(usage, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass
class TraceFacts:
    """What a batch of events adds to one trace's previews, token split, cost and text."""

    input_preview: str | None = None
    output_preview: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    estimated: bool = False
    text: list[str] = field(default_factory=list)

    def add_cost(self, cost: float, estimated: bool) -> None:
        self.cost = cost if self.cost is None else self.cost + cost
        self.estimated = self.estimated or estimated

    def apply(self, db: sqlite3.Connection, trace: str, with_text: bool) -> None:
        body = " ".join(t for t in self.text if t) if with_text else ""
        db.execute(
            _UPDATE_FACTS,
            {
                "trace": trace,
                "input": self.input_preview,
                "output": self.output_preview,
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
                "cost": self.cost,
                "estimated": int(self.estimated),
                "text": int(bool(body)),
            },
        )
        if not body:
            return
        row = db.execute("SELECT seq, text_rows FROM traces WHERE trace_id = ?", (trace,)).fetchone()
        if row is not None and 0 < row[1] <= MAX_TEXT_ROWS:
            rowid = (int(row[0]) << TEXT_ROW_BITS) | (int(row[1]) - 1)
            db.execute("INSERT INTO trace_text (rowid, body) VALUES (?, ?)", (rowid, body))


_UPDATE_FACTS = """
UPDATE traces SET
    input_preview = COALESCE(:input, input_preview),
    output_preview = COALESCE(:output, output_preview),
    prompt_tokens = prompt_tokens + :prompt,
    completion_tokens = completion_tokens + :completion,
    cost = CASE WHEN :cost IS NULL THEN cost ELSE COALESCE(cost, 0) + :cost END,
    cost_estimated = MAX(cost_estimated, :estimated),
    text_rows = text_rows + :text
WHERE trace_id = :trace
"""

# The start event of a run, by id: from the same batch, else read back from the store.
StartLookup = Callable[[str], Mapping[str, Any] | None]


def run_cost(start: Mapping[str, Any] | None, end: Mapping[str, Any]) -> tuple[float, bool] | None:
    """A run's cost when it ends, and whether it is an estimate
    (:func:`lunatrace.core.pricing.cost_of`: the end's ``metadata.cost``, else the start's,
    else for an llm run that ended well what Lunary would charge); ``None``: no cost."""
    start = start or {}
    call = None
    if start and end.get("event") == "end" and (end.get("type") or start.get("type")) == "llm":
        began, ended = parse_timestamp(start.get("timestamp")), parse_timestamp(end.get("timestamp"))
        usage = end.get("tokensUsage")
        call = LlmCall(
            model=str(start.get("name") or ""),
            prompt_tokens=_count(usage, "prompt"),
            completion_tokens=_count(usage, "completion"),
            cached_prompt_tokens=_count(usage, "promptCached"),
            duration_ms=None if began is None or ended is None else ended - began,
            input=start.get("input"),
            output=end.get("output"),
        )
    return cost_of([end.get("metadata"), start.get("metadata")], call)


def facts_of(events: Iterable[tuple[Mapping[str, Any], str]], start_of: StartLookup) -> dict[str, TraceFacts]:
    """The facts each trace gets from ``(event, its trace id)`` pairs, in stored order."""
    facts: dict[str, TraceFacts] = {}
    for event, trace in events:
        kind = event.get("event")
        if kind not in ("start", "end", "error", "chat", "update", "feedback"):
            continue
        fact = facts.get(trace)
        if fact is None:
            fact = facts[trace] = TraceFacts()
        fact.text.append(search_text(event))
        usage = event.get("tokensUsage")  # counted on any event, as the trace's total is
        fact.prompt_tokens += _count(usage, "prompt")
        fact.completion_tokens += _count(usage, "completion")
        rid = str(event.get("runId", ""))
        is_root = rid == trace
        if kind == "start" and is_root:
            fact.input_preview = preview(event.get("input")) or fact.input_preview
        elif kind == "chat":
            message = event.get("message")
            if isinstance(message, Mapping):
                role = str(message.get("role") or "user")
                text = preview(_message_text(message))
                if role in INPUT_ROLES:
                    fact.input_preview = text or fact.input_preview
                else:
                    fact.output_preview = text or fact.output_preview
        elif kind in ("end", "error"):
            if is_root:
                shown = event.get("output") if kind == "end" else _error_text(event.get("error"))
                fact.output_preview = preview(shown) or fact.output_preview
            cost = run_cost(start_of(rid), event)
            if cost is not None:
                fact.add_cost(*cost)
    return facts


def _error_text(error: Any) -> Any:
    return error.get("message") if isinstance(error, Mapping) else error
