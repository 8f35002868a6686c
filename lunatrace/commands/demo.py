"""``lunatrace demo``: run the offline demo and print its traces."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true", help="print every input and output too")


def run(args: argparse.Namespace) -> int:
    from lunatrace.demo import run_demo

    result = run_demo(full=args.full)
    return 1 if result.failed or not result.traces else 0
