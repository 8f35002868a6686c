"""Importing lunatrace is cheap, and the command line answers --version and --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lunatrace

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("lunatrace")

_PROBE = """
import json, sys
import lunatrace

def loaded(names):
    return sorted({m.split(".")[0] for m in sys.modules} & set(names))

frameworks = ("langchain", "langchain_core", "langgraph", "llama_index", "numpy", "pydantic")
providers = ("openai", "anthropic")
after_import = loaded(frameworks + providers + ("tiktoken", "requests"))

@lunatrace.trace
def f(x):
    return x

f(1)
lunatrace.shutdown(timeout=5)
print(json.dumps([after_import, loaded(frameworks + ("tiktoken",))]))
"""


def test_import_and_first_trace_load_no_framework(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "LUNATRACE_STORE": str(tmp_path / "s.db"), "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    after_import, after_trace = json.loads(done.stdout.splitlines()[-1])
    assert after_import == []
    assert after_trace == []


def test_version_flag() -> None:
    done = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"lunatrace {lunatrace.__version__}"


def test_help_flag_and_no_arguments() -> None:
    for argv in (["--help"], []):
        done = subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: lunatrace")
        assert "--version" in done.stdout


def test_module_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lunatrace.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and lunatrace.__version__ in done.stdout
