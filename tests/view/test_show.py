"""``lunatrace.show()`` in a terminal: reads the real local store, flushing first; and what
the ``lunatrace show`` command loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import lunatrace
from lunatrace.core.transport.store import EventStore


@lunatrace.trace(type="agent", name="planner")
def planner(goal: str) -> str:
    return step(goal)


@lunatrace.trace(name="step")
def step(goal: str) -> str:
    return goal[::-1]


def test_show_latest_trace_prints_tree_and_returns_it(capsys: pytest.CaptureFixture[str]) -> None:
    lunatrace.trace(name="older")(lambda: 1)()
    planner("ship it")  # no flush: show() must flush by itself
    trace = lunatrace.show()

    assert trace is not None
    assert [(r.name, depth) for r, depth in trace.walk()] == [("planner", 0), ("step", 1)]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"trace {trace.id}  ✓ success")
    assert out[1].startswith("└─ agent planner  ✓ success")
    assert out[2] == '   │  input: {"goal": "ship it"}'
    assert out[3] == "   │  output: ti pihs"
    assert out[4].startswith("   └─ chain step  ✓ success")
    assert out[5] == '         input: {"goal": "ship it"}'
    assert out[6] == "         output: ti pihs"
    assert "<details" in trace._repr_html_()


def test_show_by_id_prefix_and_silently(capsys: pytest.CaptureFixture[str]) -> None:
    planner("a")
    lunatrace.trace(name="newer")(lambda: 2)()
    lunatrace.flush()
    first = lunatrace.show(display=False)
    assert first is not None and first.name == "newer"
    capsys.readouterr()
    older = next(t for t in _all_ids() if t != first.id)
    trace = lunatrace.show(older[:8])
    assert trace is not None and trace.id == older and trace.name == "planner"
    assert "agent planner" in capsys.readouterr().out


def _all_ids() -> list[str]:
    store = EventStore(lunatrace.get_tracer().config.store_path)
    try:
        return [s.trace_id for s in store.list_traces()]
    finally:
        store.close()


def test_show_with_nothing_recorded_explains(capsys: pytest.CaptureFixture[str]) -> None:
    path = lunatrace.get_tracer().config.store_path
    assert lunatrace.show() is None
    assert f"no lunatrace store at {path} yet" in capsys.readouterr().err
    assert not path.exists()  # showing never creates a store

    EventStore(path).close()
    assert lunatrace.show() is None
    err = capsys.readouterr().err
    assert f"no traces in {path} yet" in err and "lunatrace demo" in err
    assert lunatrace.show("0000") is None
    assert "no trace '0000'" in capsys.readouterr().err


_COMMAND_MODULES = """
import sys
from lunatrace.cli import main

def loaded():
    print("loaded:", sorted(m for m in sys.modules if m.startswith("lunatrace.commands.")))

try:
    main(["--help"])
except SystemExit:
    pass
loaded()
main(["show", "--store", sys.argv[1]])
loaded()
"""


def test_the_show_command_loads_no_other_command(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND_MODULES, str(tmp_path / "events.db")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    loaded = [line for line in done.stdout.splitlines() if line.startswith("loaded:")]
    assert loaded == [
        "loaded: []",  # --help lists the commands without importing one
        "loaded: ['lunatrace.commands.show']",
    ]
