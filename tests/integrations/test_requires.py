"""Importing an integration whose framework is missing says which extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HIDE = """
import sys
BLOCKED = set(sys.argv[1].split(","))

class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hide())
try:
    import lunatrace
    import importlib
    importlib.import_module(sys.argv[2])
except ImportError as exc:
    print(f"ImportError: {exc}")
else:
    print("imported")
"""


@pytest.mark.parametrize(
    ("module", "hidden", "extra"),
    [
        ("lunatrace.integrations.llama_index", "llama_index,llama_index_instrumentation", "llama-index"),
        ("lunatrace.integrations.langchain", "langchain_core,langchain,langgraph", "langchain"),
        ("lunatrace.integrations.anthropic", "anthropic", "anthropic"),
    ],
)
def test_a_missing_framework_names_the_extra(module: str, hidden: str, extra: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", HIDE, hidden, module],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert result.stdout.startswith("ImportError: lunatrace.integrations."), result.stdout + result.stderr
    assert f"pip install 'lunatrace[{extra}]'" in result.stdout


def test_an_installed_framework_imports() -> None:
    result = subprocess.run(
        [sys.executable, "-c", HIDE, "nothing_hidden", "lunatrace.integrations.llama_index"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "imported", result.stderr
