"""``lunatrace traces`` fits its table to the terminal it prints to, keeps every column for
a program reading it, and stops quietly when its reader goes away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import lunatrace
from lunatrace.cli import main
from lunatrace.commands.traces import COLUMNS


@pytest.fixture
def questions() -> list[str]:
    tracer = lunatrace.get_tracer()
    ids = []
    for question, answer in (
        ("What is the refund policy for annual plans?", "Refunds are given within 30 days of purchase."),
        ("How do I reset my password on the mobile app?", "Open settings, then tap 'Forgot password'."),
    ):
        root = tracer.start_run("chain", "RunnableSequence", {"question": question})
        llm = tracer.start_run(
            "llm", "gpt-4o-mini", [{"role": "user", "content": question}], parent_run_id=root
        )
        tracer.end_run(llm, {"role": "assistant", "content": answer}, usage={"prompt": 30, "completion": 9})
        tracer.end_run(root, answer)
        ids.append(root)
    assert lunatrace.flush(10)
    return ids


def _table(out: str) -> list[str]:
    return out.split("\n\n")[0].splitlines()


@pytest.mark.parametrize("width", [80, 100, 130])
def test_the_table_fits_the_terminal_with_whole_ids_and_both_ends_of_each_trace(
    width: int, questions: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(["traces"]) == 0
    header, *rows = _table(capsys.readouterr().out)

    assert all(len(line) <= width for line in [header, *rows]), [len(line) for line in [header, *rows]]
    for kept in ("TRACE ID", "NAME", "STATUS", "INPUT"):
        assert kept in header
    assert "USER" not in header and "TAGS" not in header  # "-" on every line: left out first
    for trace_id, line, (asked, answered) in zip(
        reversed(questions), rows, (("How d", "Open"), ("What ", "Refu")), strict=True
    ):
        assert line.startswith(trace_id + "  ")
        assert f"  {asked}" in line and f"… → {answered}" in line


def test_wide_keeps_every_column_whole_in_a_narrow_terminal(
    questions: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["traces", "--wide"]) == 0
    header, *rows = _table(capsys.readouterr().out)

    for name in COLUMNS:
        assert name in header
    assert "Refunds are given within 30…" in rows[1]  # cut to its own column only
    assert max(len(line) for line in rows) > 80


def test_output_read_by_a_program_keeps_every_column(
    questions: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["traces"]) == 0
    header = _table(capsys.readouterr().out)[0]
    assert all(name in header for name in COLUMNS)


def test_a_reader_that_goes_away_stops_the_command_quietly(questions: list[str], tmp_path: Path) -> None:
    command = [sys.executable, "-m", "lunatrace.cli", "traces", "--limit", "2"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # like `| head` that has read enough before the command writes
    errors = child.stderr.read().decode()
    assert child.wait(timeout=60) == 141
    assert errors == ""
