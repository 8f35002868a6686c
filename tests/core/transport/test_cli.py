"""Traced programs in real subprocesses, then the ``lunatrace`` commands on what they left:
delivery at exit, the spool when the server is down, ``push``, ``traces``, ``show``, ``doctor``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lunatrace.cli import main
from lunatrace.core.transport.store import EventStore
from tests.core.transport.helpers import keys_of, spooled
from tests.support.fake_lunary import FakeLunary
from tests.support.trees import assert_valid_tree

ROOT = Path(__file__).resolve().parents[3]

PROGRAM = textwrap.dedent(
    """
    import sys
    import lunatrace

    runs = int(sys.argv[1])
    label = sys.argv[2] if len(sys.argv) > 2 else "job"
    tracer = lunatrace.get_tracer()
    for i in range(runs):
        root = tracer.start_run("chain", f"{label}-{i}", {"i": i}, user_id="ada", tags=["nightly"])
        llm = tracer.start_run("llm", "gpt-4o", [{"role": "user", "content": "hello"}], parent_run_id=root)
        tracer.end_run(llm, {"role": "assistant", "content": "hi"}, usage={"prompt": 5, "completion": 3})
        tracer.end_run(root, {"answer": i})
    """
)


@pytest.fixture
def store_path() -> Path:
    return Path(os.environ["LUNATRACE_STORE"])


def run_program(runs: int, env: dict[str, str], tmp_path: Path, label: str = "job") -> float:
    """Run the traced program to completion (no flush() call); return its wall time."""
    script = tmp_path / "traced.py"
    script.write_text(PROGRAM)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), str(runs), label],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


def server_env(server: FakeLunary, **extra: str) -> dict[str, str]:
    return {"LUNARY_PUBLIC_KEY": server.key, "LUNARY_API_URL": server.url, **extra}


def use_server(monkeypatch: pytest.MonkeyPatch, server: FakeLunary) -> None:
    for name, value in server_env(server).items():
        monkeypatch.setenv(name, value)


def test_a_program_that_exits_without_flush_delivers_everything(
    lunary_server: FakeLunary, tmp_path: Path, store_path: Path
) -> None:
    run_program(1250, server_env(lunary_server), tmp_path)  # 5,000 events
    assert len(lunary_server.events) == 5000
    assert len(set(keys_of(lunary_server.events))) == 5000
    assert_valid_tree(lunary_server.events)
    assert lunary_server.max_in_flight == 1
    assert spooled(store_path) == []


def test_a_dead_server_spools_everything_within_the_exit_bound_then_push_delivers(
    lunary_server: FakeLunary,
    tmp_path: Path,
    store_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lunary_server.stop()
    env = server_env(lunary_server, LUNATRACE_EXIT_TIMEOUT="1.5", LUNATRACE_RETRY_TIMEOUT="60")
    baseline = run_program(0, env, tmp_path)
    elapsed = run_program(1250, env, tmp_path)
    assert elapsed - baseline < 1.5 + 2.0, f"exit took {elapsed:.1f}s ({baseline:.1f}s to start)"
    kept = spooled(store_path)
    assert len(kept) == 5000

    lunary_server.start()
    use_server(monkeypatch, lunary_server)
    assert main(["push", "--dry-run"]) == 0
    assert "Would push 5000 event(s)" in capsys.readouterr().out
    assert lunary_server.requests == []
    assert main(["push"]) == 0
    assert "Pushed 5000 event(s)" in capsys.readouterr().out
    assert lunary_server.events == kept
    assert_valid_tree(lunary_server.events)
    assert main(["push"]) == 0  # safe to re-run: nothing is sent twice
    assert "Nothing to push" in capsys.readouterr().out
    assert len(lunary_server.events) == 5000


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


def test_push_reports_the_requests_it_made_retries_included(
    lunary_server: FakeLunary,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_program(2, {}, tmp_path)
    use_server(monkeypatch, lunary_server)
    monkeypatch.setenv("LUNATRACE_RETRY_TIMEOUT", "30")
    lunary_server.fail_next(5, 503)
    assert main(["push"]) == 0
    assert "Pushed 8 event(s) in 6 request(s)" in capsys.readouterr().out
    assert len(lunary_server.requests) == 6


def test_push_without_a_key_is_a_configuration_error(
    tmp_path: Path, store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_program(1, {}, tmp_path)
    assert main(["push"]) == 2
    assert "no project key configured" in capsys.readouterr().err


def test_push_stops_with_a_refused_key_and_keeps_the_events(
    lunary_server: FakeLunary,
    tmp_path: Path,
    store_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_program(2, {}, tmp_path)
    use_server(monkeypatch, lunary_server)
    monkeypatch.setenv("LUNARY_PUBLIC_KEY", "11111111-2222-4333-8444-555555555555")
    assert main(["push"]) == 1
    err = capsys.readouterr().err
    assert "was refused" in err and "8 event(s) still pending" in err
    assert "11111111-2222-4333-8444-555555555555" not in err
    assert len(spooled(store_path)) == 8


def test_with_no_key_traces_land_in_the_store_and_the_commands_show_them(
    tmp_path: Path, store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_program(3, {}, tmp_path, "offline")
    run_program(2, {}, tmp_path, "later")
    assert main(["traces", "--limit", "4"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["TRACE", "ID", "NAME", "TYPE"]
    assert [line.split()[1] for line in lines[1:5]] == ["later-1", "later-0", "offline-2", "offline-1"]
    assert "4 of 5 trace(s)" in out
    assert all(" success " in line and line.split()[-3:] == ["1", "8", "0"] for line in lines[1:5])

    trace_id = EventStore(store_path).list_traces(name="offline-0")[0].trace_id
    assert main(["show", trace_id[:8]]) == 0
    tree = capsys.readouterr().out
    assert "chain offline-0" in tree and "llm gpt-4o" in tree and "tokens 5+3" in tree
    assert tree.index("chain offline-0") < tree.index("llm gpt-4o")


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


def test_show_full_prints_long_values_in_full(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import lunatrace

    tracer = lunatrace.get_tracer()
    long_text = "word " * 100
    root = tracer.start_run("chain", "long", long_text)
    tracer.end_run(root, "ok")
    assert lunatrace.flush(5)
    assert main(["show", root]) == 0
    assert long_text.strip() not in capsys.readouterr().out
    assert main(["show", root, "--full"]) == 0
    assert long_text.strip() in capsys.readouterr().out


def test_show_a_missing_trace_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_program(1, {}, tmp_path)
    assert main(["show", "ffffffff-0000"]) == 1
    assert "no trace 'ffffffff-0000'" in capsys.readouterr().err


def test_commands_on_an_unreadable_store_fail_clearly(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_path.parent.mkdir(parents=True)
    store_path.write_bytes(b"garbage, not a database " * 200)
    for command in (["traces"], ["show", "abc"], ["push", "--dry-run"]):
        assert main(command) == 1
        assert f"cannot open the lunatrace store {store_path}" in capsys.readouterr().err


def test_traces_on_a_missing_store_says_so(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traces"]) == 1
    assert f"no lunatrace store at {store_path}" in capsys.readouterr().err
    assert not store_path.exists()


def test_bad_configuration_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LUNATRACE_QUEUE_SIZE", "lots")
    assert main(["traces"]) == 2
    assert "LUNATRACE_QUEUE_SIZE" in capsys.readouterr().err


def test_doctor_checks_the_server_and_the_store(
    lunary_server: FakeLunary,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_program(2, {}, tmp_path)
    use_server(monkeypatch, lunary_server)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert lunary_server.key not in out and "project_key" in out
    assert "Server: OK" in out and "8 not yet delivered" in out and "lunatrace push" in out
    assert lunary_server.requests[0].events == 0 and lunary_server.requests[0].status == 200

    monkeypatch.setenv("LUNARY_PUBLIC_KEY", "11111111-2222-4333-8444-555555555555")
    assert main(["doctor"]) == 1
    assert "HTTP 401: Invalid API key" in capsys.readouterr().err
    lunary_server.stop()
    assert main(["doctor"]) == 1
    assert "unreachable" in capsys.readouterr().err
