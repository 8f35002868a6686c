"""``lunatrace push``: upload the store's undelivered events to the configured server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lunatrace.core.config import Config, mask_key, redact
from lunatrace.core.transport.store import StoreError, open_existing

# What an upload reads; a bad value of any other setting is reported and left out.
PUSH_SETTINGS = frozenset(
    {
        "project_key",
        "api_url",
        "store_path",
        "batch_max_events",
        "batch_max_bytes",
        "http_timeout",
        "retry_timeout",
    }
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="only say what would be uploaded")
    parser.add_argument("--store", type=Path, default=None, help="store file (default: the configured store)")


def run(args: argparse.Namespace) -> int:
    from lunatrace.core.transport.push import push

    config = Config.resolve_for(PUSH_SETTINGS)
    path = args.store or config.store_path
    if not Path(path).expanduser().is_file():
        print(f"Nothing to push: no store at {path}.")
        return 0
    try:
        report = push(config, open_existing(path), dry_run=args.dry_run)
    except StoreError as exc:
        print(f"lunatrace push: {exc}", file=sys.stderr)
        return 1
    target = f"{redact(config.ingest_url, config.project_key)} (key {mask_key(config.project_key)})"
    if args.dry_run:
        print(f"Would push {report.pending} event(s) in about {report.requests} request(s) to {target}.")
        return 0
    if report.pending == 0:
        print(f"Nothing to push: every event in {path} is delivered.")
        return 0
    if report.damaged:
        damaged = f"{report.damaged} damaged event(s) in {path} set aside, not sent"
        print(f"lunatrace push: {damaged}.", file=sys.stderr)
    if report.configuration:
        print(
            f"lunatrace push: stopped: {report.problem}; {report.remaining} event(s) still pending. "
            "Fix the configuration, then run `lunatrace push` again.",
            file=sys.stderr,
        )
        return 1
    refused = f", {report.failed} refused by the server" if report.failed else ""
    print(f"Pushed {report.sent} event(s) in {report.requests} request(s) to {target}{refused}.")
    if report.problem:
        print(
            f"lunatrace push: stopped: {report.problem}; {report.remaining} event(s) still pending "
            "(run `lunatrace push` again)",
            file=sys.stderr,
        )
        return 1
    return 0
