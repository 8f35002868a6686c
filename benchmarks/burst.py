"""The largest burst the default settings absorb without dropping an event, and its memory.

    .venv/bin/python benchmarks/burst.py [--sizes 10000,20000,40000,80000] [--threads 2]

Each burst runs in a fresh process: ``--threads`` threads together make ``size`` calls
of a decorated agent that calls a decorated tool (2 runs, 4 events a call) as fast as they
can, against a bare ingestion endpoint (``bare_server.py``) in a process of its own, with
lunatrace's defaults. It prints, per burst size, the events emitted, the events dropped,
the process's peak RSS with tracing and the same burst's peak RSS untraced (the
baseline, same process shape), and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bare_server import running  # noqa: E402
from benchmarks.transport import BENCH_KEY  # noqa: E402

BURST = """
import json, os, resource, sys, threading
traced = sys.argv[1] == "traced"
size, threads = int(sys.argv[2]), int(sys.argv[3])
import lunatrace

def tool(i):
    return {"result": f"value {i}", "items": list(range(5))}

def agent(i):
    return tool(i)

if traced:
    tool = lunatrace.trace(type="tool")(tool)
    agent = lunatrace.trace(type="agent")(agent)

def work(count):
    for i in range(count):
        agent(i)

pool = [threading.Thread(target=work, args=(size // threads,)) for _ in range(threads)]
for t in pool: t.start()
for t in pool: t.join()
stats = lunatrace.stats() if traced else {}
if traced:
    lunatrace.flush(120)
    stats = lunatrace.stats()
print(json.dumps({"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, **stats}))
"""


def burst(mode: str, size: int, threads: int, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", BURST, mode, str(size), str(threads)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,20000,40000,80000")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with running(BENCH_KEY) as url, tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LUNARY_PUBLIC_KEY": BENCH_KEY,
            "LUNARY_API_URL": url,
            "LUNATRACE_STORE": str(Path(tmp) / "spool.db"),
        }
        print(f"{'calls':>8} {'events':>8} {'dropped':>8} {'peak RSS':>9} {'untraced':>9}  ratio")
        for size in (int(s) for s in args.sizes.split(",")):
            traced = burst("traced", size, args.threads, env)
            bare = burst("bare", size, args.threads, env)
            peak, base = traced["peak_kb"] / 1024, bare["peak_kb"] / 1024
            print(
                f"{size:>8,} {traced['queued']:>8,} {traced['dropped']:>8,} {peak:>7.0f}MB "
                f"{base:>7.0f}MB  x{peak / base:.2f}"
            )


if __name__ == "__main__":
    main()
