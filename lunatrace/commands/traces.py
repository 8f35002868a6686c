"""``lunatrace traces``: the most recent traces in the local store, one line each."""

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
    "LLM",
    "TOKENS",
    "ERRORS",
    "USER",
    "TAGS",
)
TAGS_WIDTH = 30
NAME_WIDTH = 32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", "-n", type=int, default=20, help="how many traces (default 20)")
    parser.add_argument("--name", help="only traces whose root run has this name")
    parser.add_argument("--type", help="only traces whose root run has this type (chain, agent, llm...)")
    parser.add_argument(
        "--status", choices=("success", "error", "started"), help="only traces with this status"
    )
    parser.add_argument("--user", help="only traces of this user id")
    parser.add_argument("--tag", help="only traces whose root run has this tag")
    parser.add_argument("--store", type=Path, default=None, help="store file (default: the configured store)")


def run(args: argparse.Namespace) -> int:
    if args.limit <= 0:
        print("lunatrace traces: --limit must be a positive number", file=sys.stderr)
        return 2
    path = args.store or Config.resolve_for({"store_path"}).store_path
    try:
        store = open_existing(path)
        filters = {
            "name": args.name,
            "type": args.type,
            "status": args.status,
            "user": args.user,
            "tag": args.tag,
        }
        traces = store.list_traces(limit=args.limit, **filters)
        total = store.count_traces(**filters)
    except StoreError as exc:
        print(f"lunatrace traces: {exc}", file=sys.stderr)
        return 1
    if not traces:
        print(f"No traces in {store.path}.")
        return 0
    print(format_table([row(t) for t in traces]))
    print(f"\n{len(traces)} of {total} trace(s) in {store.path}. Open one with `lunatrace show TRACE_ID`.")
    return 0


def row(trace: TraceSummary) -> tuple[str, ...]:
    from lunatrace.view.model import format_duration
    from lunatrace.view.text import preview

    started = (trace.started_at or "-").replace("T", " ")[:19]
    duration = format_duration(int(trace.duration_ms)) if trace.duration_ms is not None else "-"
    return (
        trace.trace_id,
        preview(trace.name or "-", NAME_WIDTH),
        trace.type or "-",
        trace.status,
        started,
        duration,
        str(trace.llm_calls),
        str(trace.tokens),
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
