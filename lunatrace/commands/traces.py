"""``lunatrace traces``: the most recent traces in the local store, one line each: what went
in and came out, tokens, cost; searched and filtered by time, errors, name, user, tag."""

from __future__ import annotations

import argparse
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
    print(format_table([row(t) for t in traces]))
    print(f"\n{len(traces)} of {total} trace(s) in {store.path}. Open one with `lunatrace show TRACE_ID`.")
    if any(t.cost_estimated for t in traces):
        from lunatrace.view.text import ESTIMATE_NOTE

        print(ESTIMATE_NOTE)
    return 0


def row(trace: TraceSummary) -> tuple[str, ...]:
    from lunatrace.core.pricing import format_cost
    from lunatrace.view.model import format_duration
    from lunatrace.view.text import preview

    started = (trace.started_at or "-").replace("T", " ")[:19]
    duration = format_duration(int(trace.duration_ms)) if trace.duration_ms is not None else "-"
    shown = preview(trace.input_preview or "-", PREVIEW_WIDTH)
    if trace.output_preview:
        shown += " → " + preview(trace.output_preview, PREVIEW_WIDTH)
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


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip()
        for r in [COLUMNS, *rows]
    ]
    return "\n".join(lines)
