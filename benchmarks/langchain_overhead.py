"""What lunatrace's LangChain handler costs per invoke, against a no-op handler.

Chain: ``ChatPromptTemplate(system + human) | FakeListChatModel | StrOutputParser`` (4 runs,
8 hooks per invoke). Configurations, measured in interleaved rounds so that machine noise
hits all of them alike:

* ``none``: no handler (the baseline);
* ``noop``: a handler that does nothing (overrides ``on_chat_model_start``, inline);
* ``lunatrace``: :class:`lunatrace.integrations.langchain.CallbackHandler`, delivering to a
  fake Lunary server running in a *separate process* (so the server's own CPU is not
  counted, only the SDK's);
* ``lunary``: the official ``lunary`` SDK's handler against the same server, when the
  ``lunary`` package is installed.

Two clocks per configuration, on ``invoke`` and on ``ainvoke``:

* calling thread: ``time.thread_time()`` of the thread that invokes (for ``ainvoke``, the
  event loop's thread, where inline hooks run): what the application waits for;
* whole process: ``time.process_time()`` around the invokes *and* draining the SDK's
  queue (``lunatrace.flush()``; for ``lunary``, its consumer's ``send_batch``): the full cost.

The figure of merit is ``(handler's added cost) / (no-op handler's added cost)``.

The machine is shared and noisy, so rounds are interleaved (each measures every
configuration back to back, each round starting with the next configuration) and a
configuration's added cost is the median over rounds of its difference to no handler in
the same round: paired, so that what disturbs a round disturbs both sides of its
difference. The no-op handler's added cost, the divisor, is only tens of µs, so the
ratio is only as steady as that median; the quartiles of each difference show how much
the machine moved. Each configuration's least disturbed round is printed alongside.

Run: ``.venv/bin/python benchmarks/langchain_overhead.py [--invokes 300] [--rounds 31]``

``--worker-only`` measures the worker's share alone, without a server or a thread beside
it: the records of ``--invokes`` invokes are captured (the handler's hooks run, nothing is
delivered), then built and encoded to their wire JSON on this thread (``wire_json``, as
the worker does), ``time.thread_time()`` around that; best and median round, µs per invoke.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.support.fake_lunary import FakeLunary
server = FakeLunary(key=sys.argv[2]).start()
print(server.url, flush=True)
sys.stdin.read()
server.stop()
"""


def start_server(key: str) -> tuple[subprocess.Popen[str], str]:
    """A fake Lunary server in a child process; returns the process and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, str(ROOT), key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url:
        raise RuntimeError("the fake Lunary server did not start")
    return proc, url


def build_chain() -> Any:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "Say {word}")])
    return prompt | FakeListChatModel(responses=["hello world", "second answer"]) | StrOutputParser()


def noop_handler() -> Any:
    from langchain_core.callbacks import BaseCallbackHandler

    class NoOp(BaseCallbackHandler):
        run_inline = True

        def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
            pass

    return NoOp()


class Config:
    """One configuration: the callbacks to pass and how to drain its queue."""

    def __init__(self, name: str, callbacks: list[Any], drain: Callable[[], None]) -> None:
        self.name = name
        self.callbacks = callbacks
        self.drain = drain


def make_configs(url: str, key: str) -> list[Config]:
    import lunatrace
    from lunatrace.integrations.langchain import CallbackHandler

    lunatrace.configure(project_key=key, api_url=url, store_path=Path(os.environ["BENCH_TMP"]) / "spool.db")

    def drain_lunatrace() -> None:
        if not lunatrace.flush(60):
            raise RuntimeError("lunatrace.flush timed out")

    configs = [
        Config("none", [], lambda: None),
        Config("noop", [noop_handler()], lambda: None),
        Config("lunatrace", [CallbackHandler()], drain_lunatrace),
    ]
    try:
        os.environ["LUNARY_PUBLIC_KEY"] = key
        os.environ["LUNARY_API_URL"] = url
        import lunary
        from lunary import LunaryCallbackHandler
    except ImportError:
        print("lunary not installed: measuring lunatrace only (pip install lunary to compare)")
        return configs

    def drain_lunary() -> None:
        queue = lunary.queue
        while queue.events:
            queue.consumer.send_batch()

    configs.append(Config("lunary", [LunaryCallbackHandler(app_id=key, api_url=url)], drain_lunary))
    return configs


def measure_invoke(chain: Any, config: Config, invokes: int, inputs: Any = None) -> tuple[float, float]:
    """µs per invoke on the calling thread, and for the whole process including the drain."""
    run_config: Any = {"callbacks": config.callbacks}
    inputs = {"word": "hi"} if inputs is None else inputs
    gc.collect()
    thread0, process0 = time.thread_time(), time.process_time()
    for _ in range(invokes):
        chain.invoke(inputs, config=run_config)
    thread1 = time.thread_time()
    config.drain()
    process1 = time.process_time()
    return (thread1 - thread0) / invokes * 1e6, (process1 - process0) / invokes * 1e6


def measure_ainvoke(chain: Any, config: Config, invokes: int) -> tuple[float, float]:
    run_config: Any = {"callbacks": config.callbacks}

    async def body() -> tuple[float, float]:
        gc.collect()
        thread0, process0 = time.thread_time(), time.process_time()
        for _ in range(invokes):
            await chain.ainvoke({"word": "hi"}, config=run_config)
        thread1 = time.thread_time()
        config.drain()
        process1 = time.process_time()
        return (thread1 - thread0) / invokes * 1e6, (process1 - process0) / invokes * 1e6

    return asyncio.run(body())


class _Captured:
    """A sink that keeps what the tracer queues, for :func:`worker_only`."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def emit(self, event: Any) -> None:
        self.records.append(event)

    def every_tick(self, task: Callable[[], None]) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        return True


def worker_only(invokes: int, rounds: int) -> None:
    """The worker's build and encoding of the chain's events, measured alone (see above)."""
    import lunatrace
    from lunatrace.core.events import wire_json
    from lunatrace.integrations.langchain import CallbackHandler

    lunatrace.configure(project_key=str(uuid.uuid4()), api_url="http://127.0.0.1:9")
    tracer = lunatrace.get_tracer()
    sink = _Captured()
    tracer.sink = sink  # a stand-in: nothing is sent
    chain, config = build_chain(), {"callbacks": [CallbackHandler()]}
    samples = []
    for round_index in range(rounds + 2):  # two rounds of warm-up
        sink.records = []
        for _ in range(invokes):
            chain.invoke({"word": "hi"}, config=config)
        gc.collect()
        start = time.thread_time()
        for record in sink.records:
            wire_json(record, tracer.encoder)
        if round_index >= 2:
            samples.append((time.thread_time() - start) / invokes * 1e6)
    print(
        f"worker's build and encoding alone, {invokes} invokes x {rounds} rounds, µs per invoke:"
        f" best {min(samples):.1f}, median {statistics.median(samples):.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invokes", type=int, default=300, help="invokes per configuration per round")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--worker-only", action="store_true", help="the worker's build and encoding alone")
    args = parser.parse_args()
    if args.worker_only:
        worker_only(args.invokes, args.rounds)
        return

    import tempfile

    key = str(uuid.uuid4())
    proc, url = start_server(key)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["BENCH_TMP"] = tmp
            run(url, key, args.invokes, args.rounds, args.warmup)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


def run(url: str, key: str, invokes: int, rounds: int, warmup: int) -> None:
    chain = build_chain()
    configs = make_configs(url, key)
    paths = {"invoke": measure_invoke, "ainvoke": measure_ainvoke}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for measure in paths.values():
        for config in configs:
            measure(chain, config, warmup)
    for round_index in range(rounds):
        # Each round starts with another configuration: whatever one leaves behind (garbage
        # for the collector, a warm or cold cache) falls on each of the others in turn.
        turn = round_index % len(configs)
        for path, measure in paths.items():
            for config in configs[turn:] + configs[:turn]:
                results.setdefault((path, config.name), []).append(measure(chain, config, invokes))
        print(f"round {round_index + 1}/{rounds} done", file=sys.stderr)
    report(results, [config.name for config in configs], list(paths), invokes, rounds)


def report(
    results: dict[tuple[str, str], list[tuple[float, float]]],
    names: list[str],
    paths: list[str],
    invokes: int,
    rounds: int,
) -> None:
    """Each configuration's added cost as the median over rounds of its difference to no
    handler in the same round (paired: a round's machine noise hits both), and the ratio
    of those medians; the best (least disturbed) rounds alongside."""
    print(f"\n{invokes} invokes x {rounds} rounds per configuration, µs per invoke.")
    print(
        "'added' = the median over rounds of (configuration - no handler) in the same round;"
        " 'quartiles' = its spread.\n'best' = each configuration's least disturbed round"
        " minus no handler's (a shared machine only ever adds time)."
    )
    print(f"{'path':8} {'handler':10} {'clock':8} {'added':>8} {'quartiles':>17} {'best':>8}")
    for path in paths:
        base = results[(path, "none")]
        added: dict[tuple[str, int], float] = {}
        for name in names:
            samples = results[(path, name)]
            for clock, label in ((0, "thread"), (1, "process")):
                deltas = sorted(s[clock] - b[clock] for s, b in zip(samples, base, strict=True))
                quartiles = statistics.quantiles(deltas, n=4) if len(deltas) > 1 else [deltas[0]] * 3
                best = min(s[clock] for s in samples) - min(b[clock] for b in base)
                added[(name, clock)] = quartiles[1]
                if name != "none":
                    print(
                        f"{path:8} {name:10} {label:8} {quartiles[1]:+8.1f}"
                        f" {quartiles[0]:+8.1f}..{quartiles[2]:+7.1f} {best:+8.1f}"
                    )
        for name in ("lunatrace", "lunary"):
            if (name, 0) in added:
                ratios = [f"{added[(name, clock)] / added[('noop', clock)]:.1f}" for clock in (0, 1)]
                print(
                    f"{path:8} {name:10} added / no-op's added: calling thread {ratios[0]},"
                    f" whole process {ratios[1]}"
                )


if __name__ == "__main__":
    main()
