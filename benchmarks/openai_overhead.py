"""What lunatrace.monitor(client) adds to each call of an OpenAI client, against the bare client.

The real ``openai`` client calls the fake OpenAI API of the tests (tests/support/fake_openai.py),
served from a *separate process* on 127.0.0.1, so that its CPU is not counted. Two calls:

* ``create``: ``chat.completions.create(...)``, a JSON answer;
* ``stream``: ``chat.completions.create(..., stream=True, stream_options={"include_usage": True})``
  read to its end (10 chunks).

Two clients, measured in interleaved rounds so that machine noise hits both alike: the
bare client (the baseline) and a monitored one, delivering to a fake Lunary server in
another process. Three clocks per call: the calling thread's CPU time (``time.thread_time``:
what the application pays), the whole process's CPU time around the calls *and*
``lunatrace.flush()`` (the background worker included), and the wall time (the local round
trip included). Printed: the bare client's cost, the monitored one's, the cost added, and
the ratio monitored/bare.

Run: ``.venv/bin/python benchmarks/openai_overhead.py [--calls 300] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from langchain_overhead import start_server  # noqa: E402 - the same out-of-process fake Lunary server

FAKE_OPENAI = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.support.fake_openai import running
with running() as fake:
    print(fake.base_url, flush=True)
    sys.stdin.read()  # until the benchmark closes it
"""
MESSAGES = [
    {"role": "system", "content": "You answer in one sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
Sample = tuple[float, float, float]  # µs per call: calling thread, whole process, wall


def start_fake_openai() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", FAKE_OPENAI, str(ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url:
        raise RuntimeError("the fake OpenAI server did not start")
    return proc, url


def stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(10)


def operations(client: Any) -> dict[str, Callable[[], Any]]:
    def create() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)

    def stream() -> Any:
        chunks = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        return sum(1 for _ in chunks)

    return {"create": create, "stream": stream}


def measure(operation: Callable[[], Any], count: int) -> Sample:
    import lunatrace

    gc.collect()
    wall0, thread0, process0 = time.perf_counter(), time.thread_time(), time.process_time()
    for _ in range(count):
        operation()
    thread1, wall1 = time.thread_time(), time.perf_counter()
    lunatrace.flush(60)
    process1 = time.process_time()
    return (
        (thread1 - thread0) / count * 1e6,
        (process1 - process0) / count * 1e6,
        (wall1 - wall0) / count * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls of each kind per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import openai

    import lunatrace

    key = str(uuid.uuid4())
    lunary, lunary_url = start_server(key)
    fake, base_url = start_fake_openai()
    spool = tempfile.TemporaryDirectory(prefix="lunatrace-bench-")
    try:
        lunatrace.configure(project_key=key, api_url=lunary_url, store_path=Path(spool.name) / "events.db")
        options = {"base_url": base_url, "api_key": "sk-bench", "max_retries": 0}
        clients = {
            "bare": openai.OpenAI(**options),
            "monitored": lunatrace.monitor(openai.OpenAI(**options)),
        }
        ops = {name: operations(client) for name, client in clients.items()}
        for name in clients:  # warm-up: imports, connections, tiktoken, caches
            for operation in ops[name].values():
                measure(operation, max(5, args.calls // 10))
        results: dict[tuple[str, str], list[Sample]] = {}
        for _ in range(args.rounds):
            for name in clients:
                for op_name, operation in ops[name].items():
                    results.setdefault((op_name, name), []).append(measure(operation, args.calls))
        report(results, args.rounds, args.calls)
        for client in clients.values():
            client.close()
    finally:
        lunatrace.shutdown(10)
        stop(fake)
        stop(lunary)
        spool.cleanup()


def report(results: dict[tuple[str, str], list[Sample]], rounds: int, calls: int) -> None:
    print(f"median of {rounds} interleaved rounds of {calls} calls; µs per call")
    for op_name in ("create", "stream"):
        for clock, index in (("calling thread", 0), ("whole process", 1), ("wall", 2)):
            bare, ours = (
                statistics.median(r[index] for r in results[(op_name, n)]) for n in ("bare", "monitored")
            )
            print(
                f"{op_name:6} {clock:14}  bare {bare:8.1f}  monitored {ours:8.1f}"
                f"  added {ours - bare:+7.1f}  -> monitored/bare x{ours / bare:4.2f}"
            )


if __name__ == "__main__":
    main()
