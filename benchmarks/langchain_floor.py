"""The least any Python handler can cost on ``langchain_overhead.py``'s chain: a bound.

Two stripped-down stand-ins, measured against the no-op handler in the same run:

* a *capture-only* handler, whose hooks only append their arguments to a list (what any
  handler that defers its work must at least do on the calling thread, garbage
  collection of what it keeps included);
* a *minimal encoder* for the captured events: run type, ids, timestamp, name and the
  payload converted (messages to OpenAI format) and JSON-encoded, nothing else. No
  secret scrubbing, size caps, metadata, parameters, usage or token estimate, no
  validation, batching or sending: everything lunatrace's worker does on top is left out.

Their sum over the no-op handler's added cost is what a handler that defers all its work
to a background thread cannot go below, before doing anything the wire format and the
product require.

Run: ``.venv/bin/python benchmarks/langchain_floor.py [--invokes 300] [--rounds 21]``
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any

import langchain_overhead as overhead
from langchain_core.callbacks import BaseCallbackHandler

from lunatrace.core.timestamps import format_timestamp
from lunatrace.integrations.langchain.convert import (
    chain_payload,
    generations_to_openai,
    prompt_batches_to_openai,
)

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class CaptureOnly(BaseCallbackHandler):
    """Hooks that keep their arguments and a timestamp, and do nothing else."""

    run_inline = True

    def __init__(self) -> None:
        self.captured: list[tuple[Any, ...]] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, **kwargs: Any) -> None:
        self.captured.append(("chain", time.time_ns() // 1_000_000, run_id, kwargs, inputs))

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: Any, **kwargs: Any) -> None:
        self.captured.append(("llm", time.time_ns() // 1_000_000, run_id, kwargs, messages))

    def on_chain_end(self, outputs: Any, *, run_id: Any, **kwargs: Any) -> None:
        self.captured.append(("end", time.time_ns() // 1_000_000, run_id, kwargs, outputs))

    def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
        self.captured.append(("llm_end", time.time_ns() // 1_000_000, run_id, kwargs, response))


def minimal_encode(event: tuple[Any, ...], types: dict[Any, str]) -> str:
    """One captured hook as the JSON of its event, with nothing but the required fields."""
    kind, ts_ms, run_id, kwargs, value = event
    stamp = format_timestamp(ts_ms)
    if kind in ("chain", "llm"):
        types[run_id] = "llm" if kind == "llm" else "chain"
        payload = prompt_batches_to_openai(value) if kind == "llm" else chain_payload(value)
        parent = kwargs.get("parent_run_id")
        parent_field = f',"parentRunId":"{parent}"' if parent else ""
        return (
            f'{{"type":"{types[run_id]}","event":"start","runId":"{run_id}"{parent_field},'
            f'"timestamp":"{stamp}","name":{_dumps(kwargs.get("name") or kind)},"input":{_dumps(payload)}}}'
        )
    output = generations_to_openai(value.generations) if kind == "llm_end" else chain_payload(value)
    run_type = types.pop(run_id)
    return (
        f'{{"type":"{run_type}","event":"end","runId":"{run_id}","timestamp":"{stamp}",'
        f'"output":{_dumps(output)}}}'
    )


def thread_us(chain: Any, callbacks: list[Any], invokes: int) -> float:
    gc.collect()
    started = time.thread_time()
    for _ in range(invokes):
        chain.invoke({"word": "hi"}, config={"callbacks": callbacks})
    return (time.thread_time() - started) / invokes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # As many invokes as langchain_overhead.py's rounds: what a handler keeps alive until
    # its worker drains grows the garbage collector's work with it.
    parser.add_argument("--invokes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()

    chain = overhead.build_chain()
    capture, noop = CaptureOnly(), overhead.noop_handler()
    configs: dict[str, list[Any]] = {"none": [], "noop": [noop], "capture": [capture]}
    best = {name: float("inf") for name in configs}
    encode_best = float("inf")
    types: dict[Any, str] = {}
    for _ in range(args.rounds + 1):  # the first round warms up and is not counted
        for name, callbacks in configs.items():
            capture.captured.clear()
            best[name] = min(best[name], thread_us(chain, callbacks, args.invokes))
        events = list(capture.captured)
        gc.collect()
        started = time.thread_time()
        for event in events:
            minimal_encode(event, types)
        encode_best = min(encode_best, (time.thread_time() - started) / args.invokes * 1e6)

    noop_added = best["noop"] - best["none"]
    capture_added = best["capture"] - best["none"]
    print(f"{args.invokes} invokes x {args.rounds} rounds, best round, µs per invoke.")
    total = capture_added + encode_best
    print(f"no-op handler, added:            {noop_added:7.1f}")
    print(f"capture-only handler, added:     {capture_added:7.1f}  -> x{capture_added / noop_added:.2f}")
    print(f"minimal encoding of its events:  {encode_best:7.1f}")
    print(f"capture + minimal encoding:      {total:7.1f}  -> x{total / noop_added:.2f} (before sending)")


if __name__ == "__main__":
    main()
