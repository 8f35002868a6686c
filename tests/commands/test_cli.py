"""The ``lunatrace`` commands on what traced programs (real subprocesses) left: ``push``
after the server was down, ``traces``, ``show``, ``doctor``, and their errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lunatrace.cli import main
from lunatrace.core.transport.store import EventStore
from tests.commands.helpers import point_at
from tests.core.transport.helpers import run_program, server_env, spooled
from tests.support.fake_lunary import FakeLunary
from tests.support.trees import assert_valid_tree


@pytest.fixture
def store_path() -> Path:
    return Path(os.environ["LUNATRACE_STORE"])


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
    point_at(monkeypatch, lunary_server)
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


def test_push_reports_the_requests_it_made_retries_included(
    lunary_server: FakeLunary,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_program(2, {}, tmp_path)
    point_at(monkeypatch, lunary_server)
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
    point_at(monkeypatch, lunary_server, "11111111-2222-4333-8444-555555555555")
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
    assert all(
        # llm calls, tokens prompt+completion, cost (none: Lunary charges nothing for a call under
        # 10 ms), errors, user, tags
        " success " in line and line.split()[-6:] == ["1", "5+3", "-", "0", "ada", "nightly"]
        for line in lines[1:5]
    )

    trace_id = EventStore(store_path).list_traces(name="offline-0")[0].trace_id
    assert main(["show", trace_id[:8]]) == 0
    tree = capsys.readouterr().out
    assert "chain offline-0" in tree and "llm gpt-4o" in tree and "tokens 5+3" in tree
    assert tree.index("chain offline-0") < tree.index("llm gpt-4o")


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


def test_a_bad_setting_a_command_does_not_use_is_reported_and_left_out(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LUNATRACE_QUEUE_SIZE", "lots")
    assert main(["traces"]) == 1  # it ran: there is just no store yet
    assert "no lunatrace store" in capsys.readouterr().err
    (warning,) = [r.getMessage() for r in caplog.records if "LUNATRACE_QUEUE_SIZE" in r.getMessage()]
    assert "expected a positive integer" in warning and "left out" in warning
    assert "invalid literal" not in warning  # what was expected, not Python's message


@pytest.mark.parametrize(
    ("command", "variable", "value"),
    [
        (["traces"], "LUNATRACE_STORE", "   "),
        (["push", "--dry-run"], "LUNATRACE_BATCH_MAX_BYTES", "abc"),
        (["doctor"], "LUNARY_API_URL", "ftp://elsewhere"),
    ],
)
def test_a_bad_setting_a_command_needs_exits_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv("LUNARY_PUBLIC_KEY", "11111111-2222-4333-8444-555555555555")
    monkeypatch.setenv(variable, value)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert variable in err and "configuration error" in err and "invalid literal" not in err


def test_doctor_reports_a_bad_setting_and_still_checks_the_rest(
    lunary_server: FakeLunary, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    point_at(monkeypatch, lunary_server)
    monkeypatch.setenv("LUNATRACE_SAMPLE_RATE", "2")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "Configuration: PROBLEM" in out and "LUNATRACE_SAMPLE_RATE" in out
    assert "Server: OK" in out  # the server was still checked


def test_doctor_checks_the_server_and_the_store(
    lunary_server: FakeLunary,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_program(2, {}, tmp_path)
    point_at(monkeypatch, lunary_server)
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
    err = capsys.readouterr().err
    assert "unreachable" in err and "refused the connection" in err
    assert "HTTPConnectionPool" not in err and "Errno" not in err  # said in words, not as a traceback


def _traces_with_ids(*ids: str) -> None:
    import lunatrace

    tracer = lunatrace.get_tracer()
    for n, rid in enumerate(ids):
        tracer.end_run(tracer.start_run("chain", f"request-{n}", {"n": n}, run_id=rid), "ok")
    assert lunatrace.flush(10)


def test_show_takes_minus_one_for_the_latest_and_minus_two_for_the_one_before(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = "aaaa0000-0000-4000-8000-000000000001", "bbbb0000-0000-4000-8000-000000000002"
    _traces_with_ids(first, second)
    assert main(["show", "-1"]) == 0
    assert f"trace {second}" in capsys.readouterr().out
    assert main(["show", "-2"]) == 0
    assert f"trace {first}" in capsys.readouterr().out
    assert main(["show", "-3"]) == 1
    assert "fewer than 3 traces" in capsys.readouterr().err


def test_an_ambiguous_prefix_lists_the_traces_it_matches(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [f"01a2{n:04x}-0000-4000-8000-00000000000{n}" for n in range(3)]
    _traces_with_ids(*ids, "ffff0000-0000-4000-8000-000000000009")
    assert main(["show", "01a2"]) == 1
    err = capsys.readouterr().err
    assert "matches several traces" in err and "-1 for the latest" in err
    listed = [line.split()[0] for line in err.splitlines() if line.startswith("  ")]
    assert listed == list(reversed(ids))  # most recent first, and only the matches
    assert main(["show", "01a20001"]) == 0  # more of the id: unique
    assert "request-1" in capsys.readouterr().out


def test_traces_shows_each_traces_user_and_tags(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import lunatrace

    @lunatrace.trace(name="ask")
    def ask() -> str:
        return "ok"

    with lunatrace.identify("ada"), lunatrace.tags(["beta", "fr"]):
        ask()
    ask()
    assert lunatrace.flush(10)
    assert main(["traces"]) == 0
    header, newest, oldest = capsys.readouterr().out.splitlines()[:3]
    assert header.split()[-2:] == ["USER", "TAGS"]
    assert newest.split()[-2:] == ["-", "-"] and oldest.split()[-2:] == ["ada", "beta,fr"]
