"""Traced programs in real subprocesses, ended without a flush: what delivery does at exit,
at the next start, and with two programs writing the store at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lunatrace.core.transport.store import EventStore
from tests.core.transport.helpers import PROGRAM, ROOT, keys_of, run_program, server_env, spooled
from tests.support.fake_lunary import FakeLunary
from tests.support.trees import assert_valid_tree


@pytest.fixture
def store_path() -> Path:
    return Path(os.environ["LUNATRACE_STORE"])


def test_a_program_that_exits_without_flush_delivers_everything(
    lunary_server: FakeLunary, tmp_path: Path, store_path: Path
) -> None:
    run_program(1250, server_env(lunary_server), tmp_path)  # 5,000 events
    assert len(lunary_server.events) == 5000
    assert len(set(keys_of(lunary_server.events))) == 5000
    assert_valid_tree(lunary_server.events)
    assert lunary_server.max_in_flight == 1
    assert spooled(store_path) == []


def test_the_next_start_resends_the_spool_before_new_events(
    lunary_server: FakeLunary, tmp_path: Path, store_path: Path
) -> None:
    lunary_server.stop()
    run_program(5, server_env(lunary_server, LUNATRACE_EXIT_TIMEOUT="0.5"), tmp_path, "old")
    assert len(spooled(store_path)) == 20
    lunary_server.start()
    run_program(5, server_env(lunary_server), tmp_path, "new")
    names = [e["name"] for e in lunary_server.events if e["event"] == "start" and e["type"] == "chain"]
    assert names == [f"old-{i}" for i in range(5)] + [f"new-{i}" for i in range(5)]
    assert_valid_tree(lunary_server.events)
    assert spooled(store_path) == []


def test_two_traced_programs_writing_the_store_at_once_lose_nothing(tmp_path: Path, store_path: Path) -> None:
    script = tmp_path / "traced.py"
    script.write_text(PROGRAM)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LUNATRACE_BATCH_MAX_EVENTS": "10"}
    programs = [
        subprocess.Popen([sys.executable, str(script), "300", label], env=env, stderr=subprocess.PIPE)
        for label in ("a", "b")
    ]
    errors = []
    for program in programs:
        _, err = program.communicate(timeout=60)
        assert program.returncode == 0, err
        errors.append(err)
    store = EventStore(store_path)
    assert store.count_traces(status="success") == 600, (store.stats(), errors)
    assert store.stats()["events"] == 2400
    assert all(trace.llm_calls == 1 and trace.tokens == 8 for trace in store.list_traces(limit=600))
