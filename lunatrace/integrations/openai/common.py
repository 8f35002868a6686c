"""What the OpenAI endpoints share: parameter names, raw-response calls, safe reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lunatrace.core.serialize import to_jsonable
from lunatrace.integrations.providers.params import OPENAI_PARAMS, is_raw_response, pick, snapshot

# Keyword arguments kept as the run's params, under OpenAI Chat Completions names: those of
# Chat Completions, and the Responses API's and Embeddings' own.
_OWN_PARAMS = ("verbosity", "service_tier", "modalities", "previous_response_id", "truncation")
PARAM_NAMES = OPENAI_PARAMS | {name: name for name in (*_OWN_PARAMS, "dimensions", "encoding_format")}


def request_params(kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """A call's params (its tools read once, a generator handed on as a list); ``None`` for
    a raw-response call, which is left untraced."""
    if is_raw_response(kwargs):
        return None
    snapshot(kwargs, "tools")
    return pick(kwargs, PARAM_NAMES)


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
