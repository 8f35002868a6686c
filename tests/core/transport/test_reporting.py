"""Failures a user must hear about, said once and plainly."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import lunatrace
from tests.core.transport.helpers import emit_traces, send_to
from tests.support.fake_lunary import FakeLunary

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


def test_an_unusable_store_is_reported_once_not_once_per_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    lunatrace.configure(store_path=blocker / "events.db", flush_interval=0.05)
    with caplog.at_level(logging.ERROR, logger="lunatrace"):
        for _ in range(5):
            lunatrace.trace(print)("lost")
            lunatrace.flush(5)
    assert lunatrace.stats()["dropped"] == 10
    assert caplog.text.count("events lost") == 1
    assert caplog.text.count("cannot open the lunatrace store") == 1


def test_a_long_retry_after_is_honoured_before_the_spool_is_probed(
    lunary_server: FakeLunary, tmp_path: Path
) -> None:
    lunary_server.rate_limit_next(50, retry_after=3600)
    send_to(lunary_server, tmp_path / "spool.db", retry_timeout=0.3)
    emit_traces(2)
    assert lunatrace.flush(10)
    assert lunatrace.stats()["spooled"] == 12
    asked = len(lunary_server.requests)
    time.sleep(1.5)  # five probe intervals: a probe now would ignore the server's hour
    emit_traces(1)
    assert lunatrace.flush(10)
    assert len(lunary_server.requests) == asked
