"""Offline cost estimates, computed the way the Lunary server computes a run's cost.

With no server, nothing prices a run; the local views would show no cost at all. This
module applies the server's own price table (:mod:`lunatrace.core.pricing_data`,
generated from the server's source by ``scripts/update_prices.py``, never typed by hand)
with the server's own rules (``utils/cost.ts``, ``calcRunCost``), so an estimate here is
what Lunary would show for the same run:

- only an ``llm`` run that ended, with a name (the model), and that lasted 10 ms or more
  (the server takes a faster call for a cached one and prices it at nothing);
- the first row of the table whose ``pattern`` (a regular expression, searched in the
  name) matches, trying the latest ``start_date`` first;
- ``TOKENS``: prompt and completion tokens times their price per million, minus the
  row's cached-input reduction per million cached prompt tokens; ``CHARACTERS``: the
  length of the input and output as JSON text; ``MILLISECONDS``: the duration times the
  input price (the server does not divide that one by a million);
- rounded to 10 decimals; no row, or a total of 0, falls back on the server's older list
  (a substring of the cleaned-up model name, prices per thousand tokens).

An unknown model has no cost (``None``), never ``$0``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lunatrace.core.pricing_data import GENERATED, LEGACY, MAPPINGS, UPSTREAM_COMMIT

CACHED_CALL_MS = 10  # the server prices a call faster than this at nothing
SOURCE = f"Lunary's price table of {GENERATED}"  # what an estimate says it comes from
SOURCE_DETAIL = f"{SOURCE} (server commit {UPSTREAM_COMMIT[:12]})"

# The server's ``cleanModelName``: spellings its older list reads as the usual one.
_CLEAN = (("gpt4", "gpt-4"), ("gpt3", "gpt-3"), ("gpt-35", "gpt-3.5"), ("claude3", "claude-3"),
          ("claude2", "claude-2"), ("claude1", "claude-1"))  # fmt: skip


@dataclass(frozen=True)
class LlmCall:
    """What the server reads of an ended llm run to price it."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    duration_ms: int | None = None
    input: Any = None
    output: Any = None


@lru_cache(maxsize=1)
def _compiled() -> tuple[tuple[re.Pattern[str], str, float, float, float], ...]:
    rows = []
    for _name, pattern, unit, input_cost, output_cost, caching, _start in MAPPINGS:
        rows.append((re.compile(pattern), unit, input_cost or 0.0, output_cost or 0.0, float(caching or 0)))
    return tuple(rows)


@lru_cache(maxsize=1024)
def _row_for(model: str) -> tuple[str, float, float, float] | None:
    """The first row whose pattern matches ``model`` (unit, input, output, caching): a
    trace's llm runs share a few model names, and the table has 160 patterns."""
    for pattern, unit, input_cost, output_cost, caching in _compiled():
        if pattern.search(model):
            return unit, input_cost, output_cost, caching
    return None


def _length(value: Any) -> int:
    """``JSON.stringify(value).length`` (a string as it is), in UTF-16 code units."""
    if value is None:
        return 0
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-16-le")) // 2


def _from_table(call: LlmCall) -> float:
    row = _row_for(call.model)
    if row is not None:
        unit, input_cost, output_cost, caching = row
        if unit == "TOKENS":
            prompt = (input_cost * call.prompt_tokens) / 1e6 - (caching * call.cached_prompt_tokens) / 1e6
            return prompt + (output_cost * call.completion_tokens) / 1e6
        if unit == "MILLISECONDS":
            return input_cost * (call.duration_ms or 0)
        if unit == "CHARACTERS":
            return (input_cost * _length(call.input)) / 1e6 + (output_cost * _length(call.output)) / 1e6
    return 0.0  # no row, or a unit the server does not price (IMAGES)


def _from_legacy(call: LlmCall) -> float | None:
    name = call.model.lower()
    for old, new in _CLEAN:
        name = name.replace(old, new)
    for models, input_cost, output_cost in LEGACY:
        if any(model in name for model in models):
            return (input_cost * call.prompt_tokens) / 1000 + (output_cost * call.completion_tokens) / 1000
    return None


def estimate(call: LlmCall) -> float | None:
    """The cost in USD Lunary would give this llm call; ``None`` when it would give none."""
    if not call.model or call.duration_ms is None or call.duration_ms < CACHED_CALL_MS:
        return None
    total = round(_from_table(call), 10)
    return total if total != 0 else _from_legacy(call)


def user_cost(metadata: Mapping[str, Any]) -> float | None:
    """A cost the application set itself (``metadata.cost``, in USD): it wins over an estimate."""
    value = metadata.get("cost")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def cost_of(metadata: Iterable[Mapping[str, Any] | None], call: LlmCall | None) -> tuple[float, bool] | None:
    """A run's cost, and whether it is an estimate: a ``metadata.cost`` the application set
    (the first of ``metadata`` that holds one) wins; else what Lunary would charge for
    ``call``, the llm call of a run that ended well (``None`` for any other run)."""
    for mapping in metadata:
        if isinstance(mapping, Mapping) and (cost := user_cost(mapping)) is not None:
            return cost, False
    found = None if call is None else estimate(call)
    return None if found is None else (found, True)


def format_cost(cost: float, estimated: bool) -> str:
    """``$0.0012``, ``~$0.0012`` for an estimate: four significant digits, never ``1e-05``."""
    digits = 2
    if 0 < abs(cost) < 1:
        digits = min(10, 3 - _floor_log10(abs(cost)))
    text = f"{cost:.{digits}f}"
    if "." in text and digits > 2:
        text = text.rstrip("0").rstrip(".")
    return f"{'~' if estimated else ''}${text}"


def _floor_log10(value: float) -> int:
    exponent = 0
    while value < 1:
        value *= 10
        exponent -= 1
    return exponent
