"""What the OpenAI endpoints share: parameter names, raw-response calls, safe reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lunatrace.core.serialize import to_jsonable

# ``with_raw_response`` / ``with_streaming_response`` call the traced method with this
# header and get the HTTP response back, not the answer: such calls are left untraced.
RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"

# Keyword arguments kept as the run's params, under OpenAI Chat Completions names.
PARAM_NAMES = {
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
    "top_p": "top_p",
    "stop": "stop",
    "seed": "seed",
    "n": "n",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "logit_bias": "logit_bias",
    "logprobs": "logprobs",
    "top_logprobs": "top_logprobs",
    "response_format": "response_format",
    "tools": "tools",
    "functions": "functions",
    "tool_choice": "tool_choice",
    "function_call": "function_call",
    "parallel_tool_calls": "parallel_tool_calls",
    "reasoning_effort": "reasoning_effort",
    "verbosity": "verbosity",
    "service_tier": "service_tier",
    "modalities": "modalities",
    "previous_response_id": "previous_response_id",
    "truncation": "truncation",
    "dimensions": "dimensions",
    "encoding_format": "encoding_format",
}


def is_raw_call(kwargs: Mapping[str, Any]) -> bool:
    headers = kwargs.get("extra_headers")
    return isinstance(headers, Mapping) and RAW_RESPONSE_HEADER in headers


def field(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]`` (the client's models, or plain dicts), else ``None``."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def schema_format(response_format: Any) -> Any:
    """A ``parse()`` call's ``response_format`` / ``text_format`` (a pydantic class) as the
    JSON-schema response format it is sent as; any other value as given."""
    schema = getattr(response_format, "model_json_schema", None)
    if isinstance(response_format, type) and callable(schema):
        return {
            "type": "json_schema",
            "json_schema": {"name": response_format.__name__, "schema": schema(), "strict": True},
        }
    return response_format


def plain(obj: Any) -> Any:
    """One of the client's models as plain data, without the warnings pydantic prints for
    fields typed loosely (the ``parsed`` of a ``parse()`` answer); anything else through
    the serializer."""
    if isinstance(obj, Mapping):
        return obj
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", warnings=False)
        except Exception:  # noqa: BLE001 - a model that cannot dump: the serializer's fallback
            pass
    return to_jsonable(obj)
