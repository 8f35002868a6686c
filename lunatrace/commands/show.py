"""``lunatrace show TRACE_ID``: one trace from the local store as a run tree."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lunatrace.core.config import Config
from lunatrace.core.transport.store import StoreError, open_existing


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "trace_id",
        nargs="?",
        default=None,
        help="a trace id, a unique prefix of one, or -1 (the latest, the default), -2 (the one before)...",
    )
    parser.add_argument("--full", action="store_true", help="print inputs and outputs in full")
    parser.add_argument("--store", type=Path, default=None, help="store file (default: the configured store)")


def run(args: argparse.Namespace) -> int:
    from lunatrace.view.load import TraceNotFound, load_trace
    from lunatrace.view.text import render_text

    path = args.store or Config.resolve_for({"store_path"}).store_path
    try:
        store = open_existing(path)
        trace = load_trace(store, args.trace_id)
        damaged = store.damaged_in(trace.id)
    except (StoreError, TraceNotFound) as exc:
        print(f"lunatrace show: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    print(render_text(trace, full=args.full))
    if damaged:
        print(f"lunatrace show: {damaged} damaged event(s) of this trace could not be read", file=sys.stderr)
    return 0
