"""``lunatrace doctor``: the effective configuration, a server check, the store's state."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from lunatrace.core.config import Config, ConfigError, mask_key, redact


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: doctor reads the same environment the traced program does."""


# Where events go: a bad value here stops doctor (it would check, with the key, a server
# the user did not choose); a bad value of any other setting is a problem it reports.
DESTINATION = frozenset({"project_key", "api_url"})


def run(args: argparse.Namespace) -> int:
    healthy = True
    try:
        config = Config.resolve()
    except ConfigError as exc:
        if exc.setting in DESTINATION:
            raise
        print(f"Configuration: PROBLEM, {exc} (shown below with such values left out)")
        config, healthy = Config.resolve_for(DESTINATION), False
    print("Configuration (arguments to configure() are not seen here: environment and defaults):")
    for item in dataclasses.fields(config):
        print(f"  {item.name:<17} {config.shown(item.name)}")
    healthy = check_server(config) and healthy
    healthy = check_store(config) and healthy
    return 0 if healthy else 1


def check_server(config: Config) -> bool:
    from lunatrace.core.transport.http import EMPTY_BATCH, IngestClient, Kind

    if not config.uses_server:
        print("Server: none configured (no project key): traces are kept in the local store.")
        return True
    client = IngestClient(config)
    try:
        answer = client.post(EMPTY_BATCH)
    finally:
        client.close()
    if answer.kind is Kind.OK:
        print(f"Server: OK, {redact(config.ingest_url)} accepts key {mask_key(config.project_key)}.")
        return True
    status = f"HTTP {answer.status}" if answer.status is not None else "no answer"
    problem = {
        Kind.CONFIG: "refuses the configuration (check the project key and api_url)",
        Kind.RETRY: "is unreachable or failing",
    }.get(answer.kind, "answered unexpectedly")
    report = f"Server: PROBLEM, {config.ingest_url} {problem} ({status}: {answer.detail})"
    print(redact(report, config.project_key), file=sys.stderr)
    return False


def check_store(config: Config) -> bool:
    from lunatrace.core.transport.store import StoreError, open_existing

    path = config.store_path
    if not path.exists():
        print(f"Store: {path} (not created yet)")
        return True
    try:
        stats = open_existing(path).stats()
    except StoreError as exc:
        print(f"Store: PROBLEM, {exc}", file=sys.stderr)
        return False
    print(
        f"Store: {path}, {stats['size_bytes'] / 1e6:.1f} MB, {stats['traces']} trace(s), "
        f"{stats['events']} event(s), {stats['pending']} not yet delivered "
        f"({stats['spooled']} spooled, {stats['local']} recorded offline)"
    )
    if stats["pending"] and config.uses_server:
        print("  Upload them with `lunatrace push`.")
    return True
