"""The ``lunatrace`` command. Each subcommand lives in ``lunatrace.commands.<name>``.

Subcommand modules are imported only when their command runs, so ``lunatrace --help``
stays fast and a command that needs a framework does not slow down the others. Each
module provides ``add_arguments(parser)`` and ``run(args) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from lunatrace._version import __version__
from lunatrace.core.config import ConfigError

# name -> one-line help. The module is lunatrace.commands.<name with - as _>.
COMMANDS: dict[str, str] = {
    "demo": "run the offline demo (LangChain, LangGraph, LlamaIndex, a thread) and print its traces",
    "traces": "list recent traces in the local store",
    "show": "print one trace from the local store as a run tree",
    "push": "upload stored, undelivered events to the configured Lunary server",
    "doctor": "check the configuration, the server connection and the local store",
    "ui": "browse the local store's traces in a web browser (read-only, this machine only)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lunatrace",
        description="Trace LangChain, LangGraph, LlamaIndex and Python runs into Lunary "
        "or a local store, and look at them.",
    )
    parser.add_argument("--version", action="version", version=f"lunatrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(command_module=_module_name(name))
        _load(name).add_arguments(command)
    return parser


def _module_name(name: str) -> str:
    return "lunatrace.commands." + name.replace("-", "_")


def _load(name: str) -> Any:
    return importlib.import_module(_module_name(name))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    module = importlib.import_module(args.command_module)
    try:
        return int(module.run(args))
    except ConfigError as exc:
        print(f"lunatrace: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
