"""A call's arguments as its run records them: ``params`` under OpenAI names, tools as
OpenAI function schemas, lists copied as they were sent, raw-response calls told apart.

Lunary shows and compares parameters under OpenAI's names whatever the provider, so each
provider lists which of its keyword arguments are kept and under what name
(:func:`pick`); nothing else is kept, so credentials or clients passed to a call never
reach ``params``. Tools in any provider's shape (an OpenAI Chat Completions tool, a
Responses API tool, an Anthropic tool with ``input_schema``) become OpenAI function
schemas (:func:`function_tools`, on the worker: schemas can be large); a provider's
built-in tool (``{"type": "web_search"}``) is kept as given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lunatrace.core.serialize import Deferred, to_jsonable

# The Chat Completions parameters under their own names, and the names other OpenAI APIs
# give the same ones: the start of every integration's table of names.
OPENAI_PARAMS = {
    **{
        name: name
        for name in (
            "temperature",
            "max_tokens",
            "top_p",
            "stop",
            "seed",
            "n",
            "frequency_penalty",
            "presence_penalty",
            "logit_bias",
            "logprobs",
            "top_logprobs",
            "response_format",
            "tools",
            "functions",
            "tool_choice",
            "function_call",
            "parallel_tool_calls",
            "reasoning_effort",
        )
    },
    "max_completion_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
}
# The clients' "argument not given" sentinels (``NOT_GIVEN``, ``omit``): never parameters.
_SENTINELS = frozenset({"NotGiven", "Omit"})


def given(value: Any) -> bool:
    """Whether a keyword argument's value was really given (not ``None`` or a sentinel)."""
    return value is not None and type(value).__name__ not in _SENTINELS


def pick(kwargs: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """The arguments named in ``names`` (call name -> OpenAI name) that were given; of two
    that map to one name, the first given wins. ``tools`` are converted on the worker."""
    params: dict[str, Any] = {}
    for key, value in kwargs.items():  # a call passes a few of the many names
        target = names.get(key)
        if target is not None and target not in params and given(value):
            params[target] = value
    tools = params.get("tools")
    if tools is not None:
        params["tools"] = Deferred(function_tools, list(tools) if isinstance(tools, Sequence) else tools)
    choice = params.get("tool_choice")
    if isinstance(choice, Mapping):
        params["tool_choice"] = function_choice(choice)
    return params


def function_tools(tools: Any) -> Any:
    """Tools as OpenAI function schemas (see the module's docstring)."""
    if not isinstance(tools, Sequence) or isinstance(tools, str | bytes):
        return to_jsonable(tools)
    return [function_tool(tool) for tool in tools]


def function_tool(tool: Any) -> Any:
    """One tool as ``{"type": "function", "function": {name, description?, parameters}}``."""
    data = to_jsonable(tool)
    if not isinstance(data, Mapping) or isinstance(data.get("function"), Mapping):
        return data  # already a Chat Completions tool, or not a tool at all
    kind = data.get("type")
    if kind not in (None, "function", "custom") or "name" not in data:
        return data  # a provider's built-in tool
    function: dict[str, Any] = {"name": str(data["name"])}
    if data.get("description"):
        function["description"] = data["description"]
    schema = data.get("parameters", data.get("input_schema"))
    if schema is not None:
        function["parameters"] = schema
    if data.get("strict") is not None:
        function["strict"] = data["strict"]
    return {"type": "function", "function": function}


def function_choice(choice: Mapping[str, Any]) -> Any:
    """A tool choice naming one tool (``{"type": "function"|"tool", "name": ...}``) in the
    Chat Completions shape; any other choice as given."""
    if "name" in choice and choice.get("type") in ("function", "tool"):
        return {"type": "function", "function": {"name": str(choice["name"])}}
    return dict(choice)


# Set by ``with_raw_response`` / ``with_streaming_response`` (Stainless clients): the call
# returns the HTTP response, not the answer, and is left untraced.
_RAW_RESPONSE_HEADER = "x-stainless-raw-response"


def is_raw_response(kwargs: Mapping[str, Any]) -> bool:
    """Whether the call asks for the HTTP response rather than the answer."""
    headers = kwargs.get("extra_headers")
    return isinstance(headers, Mapping) and any(str(k).lower() == _RAW_RESPONSE_HEADER for k in headers)


def snapshot(kwargs: Mapping[str, Any], key: str) -> Any:
    """The value of an iterable keyword, copied: the application may append to its list
    after the call (the next turn), and the run must record the prompt as it was sent. A
    one-shot iterable (a generator) is materialized once and handed on as that list."""
    value = kwargs.get(key)
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping) and given(value):
        value = list(value)
        if isinstance(kwargs, dict):
            kwargs[key] = value
        return list(value)
    return value
