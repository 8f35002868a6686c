"""A huge traced value costs memory in proportion to the field cap, never to its own size.

Before, a 76 MB numpy array took a process from 120 to 502 MB (``tolist()`` of all of it,
to keep 2,000 items) and a 50 MB string cost 100 MB more (copied and encoded whole, to
keep a few thousand characters). Each input here is made before memory is measured:
only what lunatrace allocates to convert it counts.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lunatrace.core.events import TIMESTAMP_KEY, build, wire_json
from lunatrace.core.serialize import FieldEncoder

CAP = 64_000
BOUND = 16 * CAP  # about 1 MB, whatever the input's size

HUGE: dict[str, Callable[[], Any]] = {
    "numpy array, 76 MB": lambda: np.random.default_rng(0).random(10_000_000),
    "string, 50 MB": lambda: "x" * 50_000_000,
    "string in a dict": lambda: {"document": "y" * 50_000_000},
    "message with a huge content": lambda: [{"role": "user", "content": "z" * 50_000_000}],
    "list of 5M numbers": lambda: list(range(5_000_000)),
    "2,000 strings of 100 KB": lambda: ["w" * 100_000] * 2_000,
    "a 100,000-key dict": lambda: {f"key{i}": "v" * 1_000 for i in range(100_000)},
    "binary bytes, 50 MB": lambda: b"\xff" * 50_000_000,
    "text bytes, 50 MB": lambda: bytearray(b"abc " * 12_500_000),
}


def peak_while(work: Callable[[], object]) -> int:
    """Bytes allocated at the peak of ``work``, above what was allocated before it."""
    gc.collect()
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("make", HUGE.values(), ids=HUGE.keys())
def test_a_huge_payload_costs_memory_in_proportion_to_the_cap(make: Callable[[], Any]) -> None:
    value = make()
    encoder = FieldEncoder(CAP)
    texts: list[str | None] = []
    assert peak_while(lambda: texts.append(encoder.encode_json(value))) < BOUND
    text = texts[0]
    assert text is not None and len(text.encode()) <= CAP


@pytest.mark.parametrize("make", HUGE.values(), ids=HUGE.keys())
def test_a_huge_value_in_every_field_of_an_event(make: Callable[[], Any]) -> None:
    value = make()
    raw = build(
        "start",
        "chain",
        "6f1c1d9e-3b8a-4f57-9d2a-0d7c2b1e4a10",
        input=value,
        params={"p": value},
        metadata={"m": value},
    )
    raw[TIMESTAMP_KEY] = 0
    texts: list[str | None] = []
    assert peak_while(lambda: texts.append(wire_json(raw, FieldEncoder(CAP)))) < 3 * BOUND
    event = json.loads(texts[0] or "")
    for field in ("input", "params", "metadata"):
        assert len(json.dumps(event[field], ensure_ascii=False, separators=(",", ":")).encode()) <= CAP + 64


def test_a_huge_numeric_matrix_stays_bounded_by_the_cap() -> None:
    """Numbers cost Python objects many times their JSON size, so this bound is wider; it
    still does not grow with the input."""
    value = np.zeros((3_000, 3_000))
    assert peak_while(lambda: FieldEncoder(CAP).encode_json(value)) < 64 * CAP


PROGRAM = textwrap.dedent(
    """
    import json, resource, sys
    import numpy as np
    from lunatrace.core.events import TIMESTAMP_KEY, build, wire_json
    from lunatrace.core.serialize import FieldEncoder

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    array, text = np.random.default_rng(0).random(10_000_000), "s" * 50_000_000
    before = peak_mb()
    raw = build("start", "tool", "6f1c1d9e-3b8a-4f57-9d2a-0d7c2b1e4a10", name=text, input=array, tags=[text])
    raw[TIMESTAMP_KEY] = 0
    size = len(wire_json(raw, FieldEncoder(64_000)))
    print(json.dumps({"grew_mb": peak_mb() - before, "event_bytes": size}))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="resource.getrusage")
def test_a_real_process_keeps_its_peak_memory_when_it_traces_huge_values(tmp_path: Path) -> None:
    """The issue's own measure: the peak resident memory of a process, not an estimate."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    result = json.loads(done.stdout)
    assert result["grew_mb"] < 40, result  # it was +380 MB for the array alone
    assert result["event_bytes"] < 4 * CAP
