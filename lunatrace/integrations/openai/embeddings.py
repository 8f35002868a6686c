"""Embeddings (``embeddings.create``) -> an ``embed`` run.

The input is the text (or texts) embedded; the output says how many vectors of how many
dimensions came back, not the vectors themselves (thousands of numbers each, of no use
to a reader and costly to send).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lunatrace.core.usage import usage_from_mapping
from lunatrace.integrations.openai.common import field, request_params
from lunatrace.integrations.providers import Answer, Request
from lunatrace.integrations.providers.params import snapshot


class EmbeddingsEndpoint:
    run_type = "embed"

    def request(self, kwargs: Mapping[str, Any]) -> Request | None:
        params = request_params(kwargs)
        return None if params is None else Request(kwargs.get("model"), snapshot(kwargs, "input"), params)

    def answer(self, result: Any) -> Answer:
        data = field(result, "data") or ()
        first = field(data[0], "embedding") if data else None
        output: dict[str, Any] = {"embeddings": len(data)}
        if isinstance(first, list):
            output["dimensions"] = len(first)
        return Answer(output, usage_from_mapping(field(result, "usage")), field(result, "model") or None)

    def accumulator(self, kwargs: Mapping[str, Any]) -> None:
        return None
