"""Failures a user must hear about, said once and plainly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import lunatrace

ROOT = Path(__file__).resolve().parents[3]


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: nothing listens there


def test_an_unreachable_server_is_reported_once_with_where_events_are_kept() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LUNARY_PUBLIC_KEY": str(uuid.uuid4()),
        "LUNARY_API_URL": f"http://127.0.0.1:{dead_port()}",
        "LUNATRACE_EXIT_TIMEOUT": "1",
    }
    code = "import lunatrace\nfor i in range(5): lunatrace.trace(print)(i)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("cannot reach the server at") == 1
    assert os.environ["LUNATRACE_STORE"] in done.stderr and "lunatrace push" in done.stderr


def test_show_finds_the_trace_kept_while_the_server_cannot_be_reached(tmp_path: Path) -> None:
    lunatrace.configure(
        project_key=str(uuid.uuid4()),
        api_url=f"http://127.0.0.1:{dead_port()}",
        store_path=tmp_path / "spool.db",
        flush_interval=0.05,
        retry_timeout=0.5,
    )
    lunatrace.trace(name="kept")(print)("x")
    trace = lunatrace.show(display=False)
    assert trace is not None and [run.name for run in trace.roots] == ["kept"]
