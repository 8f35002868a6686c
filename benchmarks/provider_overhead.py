"""What lunatrace.monitor(client) adds to each call of a provider's client, against the bare client.

Two providers, one table entry each (:data:`PROVIDERS`): the real ``openai`` client calling
``chat.completions.create`` on the fake OpenAI API of the tests (tests/support/fake_openai.py),
and the real ``anthropic`` client calling ``messages.create`` on the fake Messages API
(tests/support/fake_anthropic.py), each served from a *separate process* on 127.0.0.1 so
that its CPU is not counted. Both answer the same sentence, streamed in 9 items. Per provider:

* ``create``: the call, a JSON answer;
* ``stream``: the same call with ``stream=True`` (and OpenAI's ``include_usage``), read to its end;
* the same two answered from memory (``recorded``: an answer and its stream items recorded
  once, returned by a plain function, bare and wrapped by lunatrace as ``monitor`` wraps
  ``create``): lunatrace's own work, without the HTTP round trip and its noise.

Two clients, measured in interleaved rounds so that machine noise hits both alike: the
bare client (the baseline) and a monitored one, delivering to the benchmarks' bare
ingestion endpoint (``bare_server.py``) in another process. Three clocks per call: the
calling thread's CPU time (``time.thread_time``: what the application pays), the whole
process's CPU time around the calls *and* ``lunatrace.flush()`` (the background worker
included), and the wall time (the local round trip included). Printed: the bare
client's cost, the monitored one's, the cost added, and the ratio monitored/bare.

Run: ``.venv/bin/python benchmarks/provider_overhead.py [--provider openai|anthropic|all]
[--calls 100] [--rounds 30]``
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bare_server import running as bare_lunary  # noqa: E402 - the bare ingestion endpoint, in a process of its own

SYSTEM = "You answer in one sentence."
QUESTION = {"role": "user", "content": "What is the capital of France?"}
ANSWER = "Paris is the capital of France."  # the fake OpenAI API's own answer
Sample = tuple[float, float, float]  # µs per call: calling thread, whole process, wall
OPERATIONS = ("create", "stream", "create, recorded", "stream, recorded")


@dataclass(frozen=True)
class Provider:
    """One provider as the benchmark calls it; everything else is shared."""

    package: str  # the client's distribution, for its version
    client: Callable[[str], Any]  # base URL -> a bare client, no retries
    method: Callable[[Any], Callable[..., Any]]  # client -> the method ``monitor`` traces
    request: Mapping[str, Any]  # the call's arguments
    streamed: Mapping[str, Any]  # what the streamed call adds to them
    endpoint: Callable[[], Any]  # what ``monitor`` wraps that method with
    server: Callable[[], AbstractContextManager[str]]  # the fake API's routes, up: its base URL


def _openai_client(base_url: str) -> Any:
    import openai

    return openai.OpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)


def _openai_endpoint() -> Any:
    from lunatrace.integrations.openai.chat import ChatEndpoint

    return ChatEndpoint()


@contextmanager
def _openai_server() -> Iterator[str]:
    from tests.support.fake_openai import running

    with running() as fake:  # ANSWER word by word, then the usage: 9 chunks
        yield fake.base_url


def _anthropic_client(base_url: str) -> Any:
    import anthropic

    return anthropic.Anthropic(base_url=base_url, api_key="sk-ant-bench", max_retries=0)


def _anthropic_endpoint() -> Any:
    from lunatrace.integrations.anthropic.endpoints import MESSAGES

    return MESSAGES


@contextmanager
def _anthropic_server() -> Iterator[str]:
    from tests.support.fake_anthropic import Answer, running, text

    with contextmanager(running)() as fake:
        fake.default = Answer(content=(text(ANSWER),), chunk=8)  # 4 deltas: 9 events read (the ping skipped)
        yield fake.url


PROVIDERS = {
    "openai": Provider(
        package="openai",
        client=_openai_client,
        method=lambda client: client.chat.completions.create,
        request={
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": SYSTEM}, QUESTION],
            "temperature": 0.2,
        },
        streamed={"stream": True, "stream_options": {"include_usage": True}},
        endpoint=_openai_endpoint,
        server=_openai_server,
    ),
    "anthropic": Provider(
        package="anthropic",
        client=_anthropic_client,
        method=lambda client: client.messages.create,
        request={
            "model": "claude-sonnet-4-5",
            "max_tokens": 300,
            "system": SYSTEM,
            "messages": [QUESTION],
        },
        streamed={"stream": True},
        endpoint=_anthropic_endpoint,
        server=_anthropic_server,
    ),
}


def serve(name: str, conn: Any) -> None:
    """The fake API of provider ``name``, in a process of its own, until the benchmark closes ``conn``."""
    with PROVIDERS[name].server() as base_url:
        conn.send(base_url)
        try:
            conn.recv()
        except EOFError:
            pass


@contextmanager
def fake_api(name: str) -> Iterator[str]:
    """The base URL of provider ``name``'s fake API (spawned: its CPU is not the benchmark's)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=serve, args=(name, theirs), daemon=True)
    server.start()
    try:
        yield str(ours.recv())
    finally:
        ours.close()
        server.join(10)


def operations(provider: Provider, client: Any) -> dict[str, Callable[[], Any]]:
    def create() -> Any:
        return provider.method(client)(**provider.request)

    def stream() -> Any:
        return sum(1 for _ in provider.method(client)(**provider.request, **provider.streamed))

    return {"create": create, "stream": stream}


class Replay:
    """A recorded stream, read as the client's own ``Stream`` is (through ``_iterator``)."""

    def __init__(self, items: list[Any]) -> None:
        self._iterator = iter(items)

    def __iter__(self) -> Iterator[Any]:
        yield from self._iterator

    def close(self) -> None:
        pass


def recorded(provider: Provider, bare: Any) -> dict[str, dict[str, Callable[[], Any]]]:
    """The same two calls answered from memory (an answer and stream items recorded once
    from the server), bare and through lunatrace's wrapper: lunatrace's own work alone."""
    from lunatrace.integrations.providers import traced

    answer = operations(provider, bare)["create"]()
    items = list(provider.method(bare)(**provider.request, **provider.streamed))

    def create(**kwargs: Any) -> Any:
        return answer

    def stream(**kwargs: Any) -> Any:
        return Replay(items)

    out: dict[str, dict[str, Callable[[], Any]]] = {}
    for name, wrap in (("bare", lambda method: method), ("monitored", traced(provider.endpoint()))):
        plain, streamed = wrap(create), wrap(stream)
        out[name] = {
            "create, recorded": lambda plain=plain: plain(**provider.request),
            "stream, recorded": lambda streamed=streamed: sum(
                1 for _ in streamed(**provider.request, **provider.streamed)
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


def bench(name: str, calls: int, rounds: int) -> dict[tuple[str, str], list[Sample]]:
    """Provider ``name``'s bare and monitored clients, warmed up then measured in ``rounds``."""
    import lunatrace

    provider = PROVIDERS[name]
    with fake_api(name) as base_url:
        clients = {kind: provider.client(base_url) for kind in ("bare", "monitored")}
        lunatrace.monitor(clients["monitored"])
        replays = recorded(provider, clients["bare"])
        ops = {kind: {**operations(provider, client), **replays[kind]} for kind, client in clients.items()}
        for kind in clients:  # warm-up: imports, connections, tiktoken, caches
            for operation in ops[kind].values():
                measure(operation, max(5, calls // 10))
        results: dict[tuple[str, str], list[Sample]] = {}
        for round_ in range(rounds):
            order = list(clients) if round_ % 2 == 0 else list(reversed(clients))  # no drift favours one
            for op_name in OPERATIONS:
                for kind in order:
                    results.setdefault((op_name, kind), []).append(measure(ops[kind][op_name], calls))
        for client in clients.values():
            client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=[*PROVIDERS, "all"], default="all")
    parser.add_argument("--calls", type=int, default=100, help="calls of each kind per round")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    import lunatrace

    key = str(uuid.uuid4())
    with bare_lunary(key) as lunary_url, tempfile.TemporaryDirectory() as spool:
        lunatrace.configure(project_key=key, api_url=lunary_url, store_path=Path(spool) / "events.db")
        for name in PROVIDERS if args.provider == "all" else [args.provider]:
            results = bench(name, args.calls, args.rounds)
            version = importlib.metadata.version(PROVIDERS[name].package)
            print(f"{name} {version}: median of {args.rounds} interleaved rounds of {args.calls} calls each")
            report(results)
        lunatrace.shutdown(10)


def report(results: dict[tuple[str, str], list[Sample]]) -> None:
    """Medians over the rounds, µs per call; ``added`` is the median of each round's
    difference (the two clients of a round ran back to back, so the machine's load hits
    both alike)."""
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
