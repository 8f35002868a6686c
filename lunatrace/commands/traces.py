"""``lunatrace traces``: the most recent traces in the local store, one line each: what went
in and came out, tokens, cost; searched and filtered by time, errors, name, user, tag."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from lunatrace.core.config import Config
from lunatrace.core.transport.store import StoreError, TraceSummary, open_existing

COLUMNS = (
    "TRACE ID",
    "NAME",
    "TYPE",
    "STATUS",
    "STARTED (UTC)",
    "DURATION",
    "INPUT → OUTPUT",
    "LLM",
    "TOKENS (P+C)",
    "COST",
    "ERRORS",
    "USER",
    "TAGS",
)
TAGS_WIDTH = 30
NAME_WIDTH = 32
PREVIEW_WIDTH = 28  # of the input, and of the output
# Fitting the table to a terminal: the columns left out first when it is too narrow (after
# any column that reads "-" on every line), and how narrow the two text columns may get.
LEAVE_OUT = ("ERRORS", "TAGS", "USER", "LLM", "TYPE", "DURATION", "COST", "TOKENS (P+C)", "STARTED (UTC)")
NARROWEST = {"INPUT → OUTPUT": 24, "NAME": 14}
LAST_RESORT = 9  # the narrowest input → output column when nothing else can go


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", "-n", type=int, default=20, help="how many traces (default 20)")
    parser.add_argument("--name", help="only traces whose root run has this name")
    parser.add_argument("--type", help="only traces whose root run has this type (chain, agent, llm...)")
    parser.add_argument(
        "--status", choices=("success", "error", "started"), help="only traces with this status"
    )
    parser.add_argument("--user", help="only traces of this user id")
    parser.add_argument("--tag", help="only traces whose root run has this tag")
    parser.add_argument(
        "--search",
        "-s",
        metavar="TEXT",
        help='only traces holding every word of TEXT (a "quoted phrase" as one) in a name, input, output,'
        " error, tag or metadata; a word also finds longer ones it starts",
    )
    parser.add_argument(
        "--since", metavar="WHEN", help="only traces started at or after WHEN: 2h, 7d, 2026-12-01..."
    )
    parser.add_argument(
        "--until", metavar="WHEN", help="only traces started before WHEN (same forms as --since)"
    )
    parser.add_argument("--errors", action="store_true", help="only traces with an error")
    parser.add_argument(
        "--wide",
        action="store_true",
        help="every column, whole, however wide the terminal (a pipe or a file always gets every column)",
    )
    parser.add_argument("--store", type=Path, default=None, help="store file (default: the configured store)")


def run(args: argparse.Namespace) -> int:
    if args.limit <= 0:
        print("lunatrace traces: --limit must be a positive number", file=sys.stderr)
        return 2
    from lunatrace.view.when import parse_when

    try:
        since = None if args.since is None else parse_when(args.since)
        until = None if args.until is None else parse_when(args.until)
    except ValueError as exc:
        print(f"lunatrace traces: {exc}", file=sys.stderr)
        return 2
    filters = {
        "name": args.name,
        "type": args.type,
        "status": args.status,
        "user": args.user,
        "tag": args.tag,
        "search": args.search,
        "since_ms": since,
        "until_ms": until,
        "errors": args.errors,
    }
    path = args.store or Config.resolve_for({"store_path"}).store_path
    try:
        store = open_existing(path)
        traces = store.list_traces(limit=args.limit, **filters)
        total = store.count_traces(**filters)
    except StoreError as exc:
        print(f"lunatrace traces: {exc}", file=sys.stderr)
        return 1
    filtered = any(value for value in filters.values())
    if not traces:
        print(f"No traces match in {store.path}." if filtered else f"No traces in {store.path}.")
        return 0
    print(format_table(traces, None if args.wide else terminal_width()))
    print(f"\n{len(traces)} of {total} trace(s) in {store.path}. Open one with `lunatrace show TRACE_ID`.")
    if any(t.cost_estimated for t in traces):
        from lunatrace.view.text import ESTIMATE_NOTE

        print(ESTIMATE_NOTE)
    return 0


def row(trace: TraceSummary, preview_width: int = PREVIEW_WIDTH) -> tuple[str, ...]:
    """One trace's cells; the input and the output get ``preview_width`` characters each."""
    from lunatrace.core.pricing import format_cost
    from lunatrace.view.model import format_duration
    from lunatrace.view.text import preview

    started = (trace.started_at or "-").replace("T", " ")[:19]
    duration = format_duration(int(trace.duration_ms)) if trace.duration_ms is not None else "-"
    shown = preview(trace.input_preview or "-", preview_width)
    if trace.output_preview:
        shown += " → " + preview(trace.output_preview, preview_width)
    tokens = f"{trace.prompt_tokens}+{trace.completion_tokens}" if trace.tokens else "-"
    return (
        trace.trace_id,
        preview(trace.name or "-", NAME_WIDTH),
        trace.type or "-",
        trace.status,
        started,
        duration,
        shown,
        str(trace.llm_calls),
        tokens,
        "-" if trace.cost is None else format_cost(trace.cost, trace.cost_estimated),
        str(trace.errors),
        preview(trace.user_id or "-", NAME_WIDTH),
        preview(",".join(trace.tags) or "-", TAGS_WIDTH),
    )


def terminal_width() -> int | None:
    """The terminal's width when printing to one (or ``COLUMNS`` says it), else ``None``:
    output read by a program keeps every column whole."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit():
        return shutil.get_terminal_size().columns
    return None


def format_table(traces: list[TraceSummary], width: int | None = None) -> str:
    """The table, fitted to ``width`` characters when given: columns that say nothing left
    out, then the input → output and name columns narrowed, then the columns of
    ``LEAVE_OUT`` left out in turn; the trace id and the status always stay whole."""
    rows = [row(t) for t in traces]
    widths = {name: max(len(r[i]) for r in [COLUMNS, *rows]) for i, name in enumerate(COLUMNS)}
    if width is not None:
        _fit(widths, rows, width)
        # the input and the output share what their column was left, half each
        shared = widths["INPUT → OUTPUT"]
        rows = [row(t, max(1, (shared - len(" → ")) // 2)) for t in traces]
    kept = [i for i, name in enumerate(COLUMNS) if name in widths]
    lines = ["  ".join(_cell(r[i], widths[COLUMNS[i]]) for i in kept).rstrip() for r in [COLUMNS, *rows]]
    return "\n".join(lines)


def _fit(widths: dict[str, int], rows: list[tuple[str, ...]], width: int) -> None:
    def excess() -> int:
        return sum(widths.values()) + 2 * (len(widths) - 1) - width

    for i, name in enumerate(COLUMNS):
        if name in LEAVE_OUT and all(r[i] in ("-", "0") for r in rows):
            del widths[name]
    for name in LEAVE_OUT:
        for narrowed, narrowest in NARROWEST.items():
            widths[narrowed] = max(min(widths[narrowed], narrowest), widths[narrowed] - excess())
        if excess() <= 0:
            return
        widths.pop(name, None)
    widths["INPUT → OUTPUT"] = max(LAST_RESORT, widths["INPUT → OUTPUT"] - excess())


def _cell(text: str, width: int) -> str:
    from lunatrace.view.text import preview

    return preview(text, width).ljust(width)
