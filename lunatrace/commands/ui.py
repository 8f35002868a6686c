"""``lunatrace ui``: browse the local store's traces in a web browser."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from lunatrace.core.config import Config

DEFAULT_PORT = 8765


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; the viewer has no login)",
    )
    parser.add_argument("--store", type=Path, default=None, help="store file (default: the configured store)")


def run(args: argparse.Namespace) -> int:
    from lunatrace.core.transport.store import StoreError
    from lunatrace.ui.server import is_loopback, make_server

    store_path = args.store or Config.resolve_for({"store_path"}).store_path
    try:
        server = make_server(store_path, args.host, args.port)
    except StoreError as exc:
        print(f"lunatrace ui: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"lunatrace ui: port {args.port} on {args.host} is already in use "
                f"(another viewer?); choose a free one with --port, e.g. --port {args.port + 1}",
                file=sys.stderr,
            )
        else:
            print(
                f"lunatrace ui: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                file=sys.stderr,
            )
        return 1
    if not is_loopback(args.host):
        print(
            f"lunatrace ui: warning: listening on {args.host}, so anyone who can reach this machine "
            "can read your traces",
            file=sys.stderr,
        )
    print(f"lunatrace viewer on {server.url} (store: {server.store_path}); Ctrl+C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
