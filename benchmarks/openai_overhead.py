"""What lunatrace.monitor(client) adds to each call of an OpenAI client, against the bare client.

The real ``openai`` client calls the fake OpenAI API of the tests (tests/support/fake_openai.py),
served from a *separate process* on 127.0.0.1, so that its CPU is not counted. Two calls:

* ``create``: ``chat.completions.create(...)``, a JSON answer;
* ``stream``: ``chat.completions.create(..., stream=True, stream_options={"include_usage": True})``
  read to its end (10 chunks);
* the same two answered from memory (``recorded``: an answer and its chunks recorded once,
  returned by a plain function, bare and wrapped by lunatrace as ``monitor`` wraps
  ``create``): lunatrace's own work, without the HTTP round trip and its noise.

Two clients, measured in interleaved rounds so that machine noise hits both alike: the
bare client (the baseline) and a monitored one, delivering to the benchmarks' bare
ingestion endpoint (``bare_server.py``) in another process. Three clocks per call: the
calling thread's CPU time (``time.thread_time``: what the application pays), the whole
process's CPU time around the calls *and* ``lunatrace.flush()`` (the background worker
included), and the wall time (the local round trip included). Printed: the bare
client's cost, the monitored one's, the cost added, and the ratio monitored/bare.

Run: ``.venv/bin/python benchmarks/openai_overhead.py [--calls 100] [--rounds 30]``
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bare_server import running as bare_lunary  # noqa: E402 - the bare ingestion endpoint, in a process of its own

MESSAGES = [
    {"role": "system", "content": "You answer in one sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
Sample = tuple[float, float, float]  # µs per call: calling thread, whole process, wall
OPERATIONS = ("create", "stream", "create, recorded", "stream, recorded")


def serve_openai(conn: Any) -> None:
    """The fake OpenAI API, in a process of its own, until the benchmark closes ``conn``."""
    from tests.support.fake_openai import running

    with running() as fake:
        conn.send(fake.base_url)
        try:
            conn.recv()
        except EOFError:
            pass


@contextmanager
def fake_openai() -> Iterator[str]:
    """The base URL of the fake OpenAI API (spawned: its CPU is not the benchmark's)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=serve_openai, args=(theirs,), daemon=True)
    server.start()
    try:
        yield str(ours.recv())
    finally:
        ours.close()
        server.join(10)


def operations(client: Any) -> dict[str, Callable[[], Any]]:
    def create() -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2)

    def stream() -> Any:
        chunks = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        return sum(1 for _ in chunks)

    return {"create": create, "stream": stream}


class Replay:
    """A recorded stream, read as the client's own ``Stream`` is (through ``_iterator``)."""

    def __init__(self, chunks: list[Any]) -> None:
        self._iterator = iter(chunks)

    def __iter__(self) -> Iterator[Any]:
        yield from self._iterator

    def close(self) -> None:
        pass


def recorded(bare: Any) -> dict[str, dict[str, Callable[[], Any]]]:
    """The same two calls answered from memory (an answer and chunks recorded once from
    the server), bare and through lunatrace's wrapper: lunatrace's own work alone."""
    from lunatrace.integrations.openai.chat import ChatEndpoint
    from lunatrace.integrations.providers import traced

    answer = operations(bare)["create"]()
    chunks = list(bare.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    def create(**kwargs: Any) -> Any:
        return answer

    def stream(**kwargs: Any) -> Any:
        return Replay(chunks)

    out: dict[str, dict[str, Callable[[], Any]]] = {}
    for name, wrap in (("bare", lambda method: method), ("monitored", traced(ChatEndpoint()))):
        plain, streamed = wrap(create), wrap(stream)
        out[name] = {
            "create, recorded": lambda plain=plain: plain(model="gpt-4o-mini", messages=MESSAGES),
            "stream, recorded": lambda streamed=streamed: sum(
                1 for _ in streamed(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            ),
        }
    return out


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
    parser.add_argument("--calls", type=int, default=100, help="calls of each kind per round")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    import openai

    import lunatrace

    key = str(uuid.uuid4())
    with bare_lunary(key) as lunary_url, fake_openai() as base_url, tempfile.TemporaryDirectory() as spool:
        lunatrace.configure(project_key=key, api_url=lunary_url, store_path=Path(spool) / "events.db")
        options = {"base_url": base_url, "api_key": "sk-bench", "max_retries": 0}
        clients = {
            "bare": openai.OpenAI(**options),
            "monitored": lunatrace.monitor(openai.OpenAI(**options)),
        }
        replays = recorded(clients["bare"])
        ops = {name: {**operations(client), **replays[name]} for name, client in clients.items()}
        for name in clients:  # warm-up: imports, connections, tiktoken, caches
            for operation in ops[name].values():
                measure(operation, max(5, args.calls // 10))
        results: dict[tuple[str, str], list[Sample]] = {}
        for round_ in range(args.rounds):
            order = list(clients) if round_ % 2 == 0 else list(reversed(clients))  # no drift favours one
            for op_name in OPERATIONS:
                for name in order:
                    results.setdefault((op_name, name), []).append(measure(ops[name][op_name], args.calls))
        report(results, args.rounds, args.calls)
        for client in clients.values():
            client.close()
        lunatrace.shutdown(10)


def report(results: dict[tuple[str, str], list[Sample]], rounds: int, calls: int) -> None:
    """Medians over the rounds; ``added`` is the median of each round's difference (the two
    clients of a round ran back to back, so the machine's load hits both alike)."""
    print(f"median of {rounds} interleaved rounds of {calls} calls each; µs per call")
    for op_name in OPERATIONS:
        for clock, index in (("calling thread", 0), ("whole process", 1), ("wall", 2)):
            bare_runs, ours_runs = ([r[index] for r in results[(op_name, n)]] for n in ("bare", "monitored"))
            bare, ours = statistics.median(bare_runs), statistics.median(ours_runs)
            added = statistics.median(b - a for a, b in zip(bare_runs, ours_runs, strict=True))
            print(
                f"{op_name:16} {clock:14}  bare {bare:8.1f}  monitored {ours:8.1f}"
                f"  added {added:+7.1f}  -> monitored/bare x{ours / bare:4.2f}"
            )


if __name__ == "__main__":
    main()
