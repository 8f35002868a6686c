"""Every benchmark still runs: a tiny run of each, so none rots unnoticed between the
times its figures are taken (the figures themselves are not checked: see docs/performance.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = {
    "burst.py": ["--sizes", "200", "--threads", "2"],
    "delivery_rtt.py": ["--rate", "100", "--seconds", "0.5", "--rtt", "0.02"],
    "langchain_floor.py": ["--invokes", "20", "--rounds", "1"],
    "langchain_instructions.py": ["--small", "1", "--large", "2", "--warmup", "1"],
    "langchain_overhead.py": ["--invokes", "20", "--rounds", "1", "--warmup", "5"],
    "llama_index_overhead.py": ["--calls", "20", "--queries", "2", "--rounds", "1"],
    "provider_overhead.py": ["--calls", "5", "--rounds", "1"],
    "payloads.py": ["--invokes", "16", "--rounds", "1", "--messages", "10", "--documents", "5"],
    "store_search.py": ["--traces", "200", "--repeat", "1"],
    "transport.py": ["--events", "2000"],
    "view_render.py": ["--runs", "50", "--repeat", "1"],
}


def test_every_benchmark_is_listed() -> None:
    scripts = {p.name for p in BENCHMARKS.glob("*.py")} - {"bare_server.py"}  # a helper of the others
    assert scripts == set(TINY)


@pytest.mark.parametrize("script", sorted(TINY))
def test_a_tiny_run_prints_its_figures(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *TINY[script]],
        cwd=BENCHMARKS.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert any(ch.isdigit() for ch in done.stdout), done.stdout
