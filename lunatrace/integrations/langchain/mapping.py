"""Where LangChain keeps each field a Lunary run needs (see docs/langchain.md).

The few functions a hook needs at once (names, run types, fold and control-flow checks)
run on the application's thread, so each reads a handful of keys and never converts or
copies payloads; the rest (tags, metadata, parameters, usage, response model) run on
the background worker from the hook's arguments. Every argument may be ``None``
or of an unexpected type: LangChain has changed callback arguments between releases
(``serialized`` became ``None`` for most runnables), so nothing is assumed present.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from lunatrace.core.usage import Usage, add_usage, usage_from_mapping
from lunatrace.integrations.providers.params import OPENAI_PARAMS

logger = logging.getLogger("lunatrace")
HIDDEN_TAG = "langsmith:hidden"
# Tags LangChain adds for its own bookkeeping; they would bury the user's tags.
_INTERNAL_TAG_PREFIXES = ("seq:step:", "graph:step:", "map:key:", "langsmith:", "branch:", "parallel:")
_RETRY_TAG = "retry:attempt:"
# Metadata LangChain adds to every run; kept out of the run's metadata except for these.
_KEPT_INTERNAL_METADATA = frozenset({"langgraph_node", "langgraph_step", "ls_provider"})
_INTERNAL_METADATA_PREFIXES = ("ls_", "lc_", "langgraph_", "checkpoint_", "__")
# Control-flow exceptions of LangGraph: an interrupt or a Command going to a parent graph.
_CONTROL_FLOW = frozenset({"GraphBubbleUp", "GraphInterrupt", "NodeInterrupt", "ParentCommand"})
_PAUSES = frozenset({"GraphInterrupt", "NodeInterrupt"})

# invocation_params key -> OpenAI parameter name. Only these are sent, so credentials
# (api keys, headers, clients) in invocation params can never leak into ``params``.
_PARAM_NAMES = OPENAI_PARAMS | {
    "max_tokens_to_sample": "max_tokens",
    "num_predict": "max_tokens",
    "top_k": "top_k",
    "stop_sequences": "stop",
}
_LS_PARAMS = (("ls_temperature", "temperature"), ("ls_max_tokens", "max_tokens"), ("ls_stop", "stop"))


def model_name(serialized: Any, metadata: Mapping[str, Any] | None, invocation_params: Any) -> str:
    """The model id of an llm run (the model's class name when no id is given).

    Order: the user's ``model_name`` metadata (as the official handler reads it), LangChain's
    ``ls_model_name``, invocation params ``model``/``model_name``/``model_id``,
    the serialized constructor kwargs; the class name only as a last resort.
    """
    if metadata:
        name = metadata.get("model_name") or metadata.get("ls_model_name")  # the user's first
        if name:
            return str(name)
    for source in (invocation_params, _kwargs_of(serialized)):
        if source is not None and (
            type(source) is dict or isinstance(source, Mapping)
        ):  # an ABC check is slow
            for key in ("model", "model_name", "model_id", "deployment_name"):
                value = source.get(key)
                if value and isinstance(value, str):
                    return value
    return class_name(serialized) or "llm"


def _kwargs_of(serialized: Any) -> Any:
    if serialized is None:
        return None
    return serialized.get("kwargs") if type(serialized) is dict or isinstance(serialized, Mapping) else None


def class_name(serialized: Any) -> str | None:
    """The class behind a run, from ``serialized`` (``name``, else the last id part)."""
    if serialized is None or not (type(serialized) is dict or isinstance(serialized, Mapping)):
        return None  # None: most runnables; ``type`` first: an ABC check is slow
    name = serialized.get("name")
    if name:
        return str(name)
    ids = serialized.get("id")
    if isinstance(ids, Sequence) and ids and not isinstance(ids, str):
        return str(ids[-1])
    return None


def llm_params(invocation_params: Any, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Call parameters under OpenAI names; never anything outside the known list."""
    params: dict[str, Any] = {}
    if type(invocation_params) is dict or (
        invocation_params is not None and isinstance(invocation_params, Mapping)
    ):
        for key, value in invocation_params.items():
            target = _PARAM_NAMES.get(key)
            if target is not None and value is not None and target not in params:
                params[target] = value
    if "tools" in params:
        params["tools"] = openai_tools(params["tools"])
    if metadata:
        for source, target in _LS_PARAMS:
            if target not in params:
                value = metadata.get(source)
                if value is not None:
                    params[target] = value
    return params


def openai_tools(tools: Any) -> Any:
    """Tools as OpenAI function schemas, whatever form was bound: ``bind_tools`` converts
    them already, but ``.bind(tools=[...])`` passes ``BaseTool`` objects, functions,
    pydantic classes or bare ``{"name", "parameters"}`` schemas through as they are.
    Provider tools (``{"type": "web_search"}``) and unconvertible values stay as given."""
    if not isinstance(tools, Sequence) or isinstance(tools, str | bytes):
        return tools
    from langchain_core.utils.function_calling import convert_to_openai_tool

    converted = []
    for item in tools:
        if isinstance(item, Mapping) and ("type" in item or "name" not in item):
            converted.append(item)  # an OpenAI tool already, or a provider's own
            continue
        try:
            converted.append(convert_to_openai_tool(item))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:  # not a tool LangChain knows
            logger.debug("lunatrace: tool %r kept as given (%s)", type(item).__name__, exc)
            converted.append(item)
    return converted


def usage_of(response: Any) -> Usage | None:
    """Token usage of an ``LLMResult``.

    ``message.usage_metadata`` of every generation first (normalised by LangChain across
    providers and present when streaming), summed; else ``llm_output["token_usage"]``
    or ``["usage"]``. ``None`` when nothing was reported.
    """
    total: Usage | None = None
    for batch in getattr(response, "generations", None) or ():
        for generation in batch:
            message = getattr(generation, "message", None)
            if message is not None:
                total = add_usage(total, usage_from_mapping(getattr(message, "usage_metadata", None)))
    if total is not None:
        return total
    llm_output = getattr(response, "llm_output", None)
    if llm_output is not None and isinstance(llm_output, Mapping):
        for key in ("token_usage", "usage"):
            usage = usage_from_mapping(llm_output.get(key))
            if usage is not None:
                return usage
    return None


def response_model(response: Any) -> str | None:
    """The exact model version a provider answered with, when it says."""
    for batch in getattr(response, "generations", None) or ():
        for generation in batch:
            metadata = getattr(getattr(generation, "message", None), "response_metadata", None)
            if type(metadata) is dict or isinstance(metadata, Mapping):
                name = metadata.get("model_name") or metadata.get("model")
                if name:
                    return str(name)
            break
        break
    llm_output = getattr(response, "llm_output", None)
    if llm_output is not None and isinstance(llm_output, Mapping):
        name = llm_output.get("model_name") or llm_output.get("model")
        if name:
            return str(name)
    return None


def chain_type(name: str | None, metadata: Mapping[str, Any] | None) -> str:
    """``agent`` for agent roots, else ``chain``.

    An agent is a ``create_agent`` graph root (``ls_integration`` says so and it is not a
    node itself), a run named after its ``lc_agent_name``, or a classic ``AgentExecutor``.
    """
    if name == "AgentExecutor":
        return "agent"
    if metadata:
        agent_name = metadata.get("lc_agent_name")
        if agent_name and agent_name == name:
            return "agent"
        if metadata.get("ls_integration") == "langchain_create_agent" and "langgraph_node" not in metadata:
            return "agent"
    return "chain"


def user_tags(tags: Sequence[str] | None) -> list[str] | None:
    """The tags worth showing: LangChain's own step and key tags dropped."""
    if not tags:
        return None
    kept = [t for t in tags if not (isinstance(t, str) and t.startswith(_INTERNAL_TAG_PREFIXES))]
    return kept or None


def retry_attempt(tags: Sequence[str] | None) -> int | None:
    """N from a ``retry:attempt:N`` tag (set by ``Runnable.with_retry`` on attempts >= 2)."""
    for tag in tags or ():
        if isinstance(tag, str) and tag.startswith(_RETRY_TAG):
            try:
                return int(tag[len(_RETRY_TAG) :])
            except ValueError:
                return None
    return None


def user_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The run's metadata without LangChain's bookkeeping keys (graph node and step kept)."""
    if not metadata:
        return None
    kept = {
        k: v
        for k, v in metadata.items()
        if k in _KEPT_INTERNAL_METADATA or not k.startswith(_INTERNAL_METADATA_PREFIXES)
    }
    return kept or None


def unwrap(value: Any, key: str) -> Any:
    """``{"input": x}`` -> ``x`` (LangChain's single-key wrappers around chain payloads)."""
    if type(value) is dict and len(value) == 1 and key in value:
        return value[key]
    return value


def is_control_flow(error: BaseException) -> bool:
    """Whether ``error`` is LangGraph control flow (interrupt, parent command), not a failure."""
    return any(cls.__name__ in _CONTROL_FLOW for cls in type(error).__mro__)


def is_pause(error: BaseException) -> bool:
    """Whether ``error`` is a graph pausing for a human (``interrupt()``), not navigation."""
    return any(cls.__name__ in _PAUSES for cls in type(error).__mro__)


def interrupt_payload(error: BaseException) -> Any:
    """What an interrupt carries (the ``interrupt()`` values), for the run's output."""
    args = getattr(error, "args", ())
    if not args:
        return None
    first = args[0]
    if isinstance(first, Sequence) and not isinstance(first, str | bytes):
        return [getattr(item, "value", item) for item in first]
    return first
