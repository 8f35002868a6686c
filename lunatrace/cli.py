"""The ``lunatrace`` command. Each subcommand lives in ``lunatrace.commands.<name>``.

Only the module of the command named on the command line is imported (its arguments
are declared by it), so ``lunatrace --help`` stays fast and a command that needs a
framework or the store does not slow down the others. Each module provides
``add_arguments(parser)`` and ``run(args) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Iterable, Sequence
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


def build_parser(declared: Iterable[str] = COMMANDS) -> argparse.ArgumentParser:
    """The parser of every command; the arguments only of those ``declared`` (their
    modules are imported to declare them)."""
    declared = set(declared)
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
        if name in declared:
            _load(name).add_arguments(command)
    return parser


def _named_command(argv: Sequence[str]) -> str | None:
    """The command on a command line: its first word that is not an option (the top level
    has no option that takes a value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _module_name(name: str) -> str:
    return "lunatrace.commands." + name.replace("-", "_")


def _load(name: str) -> Any:
    return importlib.import_module(_module_name(name))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    words = sys.argv[1:] if argv is None else list(argv)
    command = _named_command(words)
    parser = build_parser(declared=() if command is None else (command,))
    args = parser.parse_args(words)
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
    except BrokenPipeError:
        # the reader went away (``lunatrace traces | head``): stop quietly, and keep the
        # interpreter's final flush from failing on the closed pipe too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a command stopped by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
