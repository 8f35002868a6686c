"""LlamaIndex objects -> lunatrace run fields, shared by the instrumentation and legacy paths.

Everything here reads attributes only (``ChatMessage.blocks``, ``NodeWithScore.score``,
``ToolMetadata.name``...) and never imports LlamaIndex, so it is cheap and works on any
object of the right shape. Heavy conversion (pydantic dumps, JSON) is left to the
background worker; these functions only pick the fields the Lunary UI shows. The hooks
call the converters that walk messages or build tool schemas (which may run the
application's ``__repr__`` or pydantic) through ``later``, so those run on the worker too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lunatrace.core.messages import to_openai_message
from lunatrace.core.usage import Usage, usage_from_mapping
from lunatrace.integrations.llama_index._common import later

PARAM_NAMES = (
    "temperature",
    "max_tokens",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "max_retries",
    "timeout",
)
UNKNOWN_MODEL = "unknown"
_tool_schemas: dict[int, tuple[Any, Any]] = {}
_TOOL_SCHEMA_CACHE = 512


def _fields(obj: Any) -> dict[str, Any]:
    """A pydantic model's field values without triggering ``__getattr__`` misses."""
    values = getattr(obj, "__dict__", None)
    return values if isinstance(values, dict) else {}


def role_name(role: Any) -> str:
    return str(getattr(role, "value", role) or "user")


def _picked(msg: Any) -> Any:
    """What a message says, read at once: the application may change a ``ChatMessage``
    after the call (a ReAct agent rewrites its answer's content). A string or a mapping
    is kept as it is; a ``ChatMessage`` gives its role, content, tool-call blocks (as
    ``tool_calls``), ``tool_call_id`` and ``name``, not yet in OpenAI format."""
    if isinstance(msg, str | Mapping):
        return msg
    fields = _fields(msg)
    extra = fields.get("additional_kwargs") or {}
    calls = [
        {"id": block.tool_call_id, "name": block.tool_name, "args": block.tool_kwargs}
        for block in fields.get("blocks") or ()
        if type(block).__name__ == "ToolCallBlock"
    ]
    data: dict[str, Any] = {"role": role_name(fields.get("role")), "content": getattr(msg, "content", None)}
    if calls:
        data["tool_calls"] = calls
    elif extra.get("tool_calls"):
        data["tool_calls"] = extra["tool_calls"]
    for key in ("tool_call_id", "name"):
        if extra.get(key):
            data[key] = extra[key]
    return data


def message_later(msg: Any) -> Any:
    """One LlamaIndex ``ChatMessage`` in OpenAI format, tool-call blocks as ``tool_calls``:
    its fields read now, the format made on the worker (where tool-call arguments are
    written as JSON, and the application's objects in them with their ``__repr__``)."""
    return later("message", to_openai_message, _picked(msg))


def _listed(msgs: Any) -> list[Any]:
    if msgs is None:
        return []
    if isinstance(msgs, str) or not isinstance(msgs, Sequence):
        return [msgs]
    return list(msgs)


def _openai_messages(picked: list[Any]) -> list[dict[str, Any]]:
    return [to_openai_message(m) for m in picked]


def prompt_messages(prompt: Any) -> list[dict[str, Any]]:
    """A completion prompt as a one-message chat input (what Lunary renders and prices)."""
    return [{"role": "user", "content": "" if prompt is None else str(prompt)}]


def llm_input(prompt_or_messages: Any) -> Any:
    """An llm call's input from its first argument: a prompt as one small dict; messages
    read now (see :func:`_picked`: the application may append the answer to its list,
    or change a message, as soon as the call returns), in OpenAI format on the worker."""
    if isinstance(prompt_or_messages, str):
        return prompt_messages(prompt_or_messages)
    return later("llm input", _openai_messages, [_picked(m) for m in _listed(prompt_or_messages)])


def response_output(response: Any) -> Any:
    """A ``ChatResponse`` or ``CompletionResponse`` as the assistant message it produced
    (a chat message's read now, in OpenAI format on the worker: :func:`message_later`)."""
    if response is None:
        return None
    fields = _fields(response)
    if "message" in fields:
        return message_later(fields["message"])
    if "text" in fields:
        return {"role": "assistant", "content": fields.get("text") or ""}
    return {"role": "assistant", "content": str(response)}


def response_usage(response: Any) -> Usage | None:
    """Provider token counts from ``response.raw`` (OpenAI, Anthropic, Gemini spellings),
    else from ``response.additional_kwargs`` (where llama-index-llms-openai copies them)."""
    fields = _fields(response)
    raw = fields.get("raw")
    if raw is not None:
        for key in ("usage", "usage_metadata"):
            nested = raw.get(key) if isinstance(raw, Mapping) else getattr(raw, key, None)
            usage = usage_from_mapping(nested)
            if usage:
                return usage
    return usage_from_mapping(fields.get("additional_kwargs") or None)


def response_model(response: Any) -> str | None:
    """The exact model version a provider answered with (only in ``response.raw``)."""
    raw = _fields(response).get("raw")
    model = raw.get("model") if isinstance(raw, Mapping) else getattr(raw, "model", None)
    return model if isinstance(model, str) and model else None


def response_metadata(response: Any, metadata: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """``metadata`` plus ``responseModel`` when the provider said which model version answered."""
    model = response_model(response)
    if not model:
        return dict(metadata) if metadata else None
    return {**(metadata or {}), "responseModel": model}


def model_name(model_dict: Any, instance: Any = None) -> str:
    """The model id for an llm run's name.

    ``model_dict`` is ``LLM.to_payload()`` (``model_name``) on recent LlamaIndex and
    ``LLM.to_dict()`` (every field, e.g. ``model``) on early 0.14 releases; then the
    instance's fields, then its ``metadata.model_name``, then the class.
    """
    data = model_dict if isinstance(model_dict, Mapping) else {}
    name = data.get("model_name") or data.get("model")
    if not name or name == UNKNOWN_MODEL:
        fields = _fields(instance)
        name = fields.get("model") or fields.get("model_name")
    if not name and "model_name" not in data and instance is not None:  # to_payload() read it already
        try:
            name = instance.metadata.model_name
        except Exception:  # noqa: BLE001 - the application's metadata property may raise anything: use the class
            name = None
    if not isinstance(name, str) or not name or name == UNKNOWN_MODEL:
        name = (model_dict.get("class_name") if isinstance(model_dict, Mapping) else None) or (
            type(instance).__name__ if instance is not None else UNKNOWN_MODEL
        )
    return str(name)


def llm_params(instance: Any, additional_kwargs: Any = None) -> dict[str, Any]:
    """Request parameters under OpenAI names: the LLM's own settings (read now: the
    application may change them before the next call) plus call-time tools (their schemas
    built on the worker)."""
    fields = _fields(instance)
    params: dict[str, Any] = {key: fields[key] for key in PARAM_NAMES if fields.get(key) is not None}
    extra = additional_kwargs if isinstance(additional_kwargs, Mapping) else {}
    tools = extra.get("tools")
    if tools:
        params["tools"] = later("llm tools", tool_schemas, tools)
    for key in ("tool_choice", "tool_required"):
        if extra.get(key) is not None:
            params[key] = extra[key]
    return params


def tool_schemas(tools: Any) -> list[Any]:
    return [tool_schema(t) for t in tools]


def tool_schema(tool: Any) -> Any:
    """A tool in OpenAI function format, cached per tool metadata object."""
    metadata = getattr(tool, "metadata", None)
    if metadata is None:
        return tool
    cached = _tool_schemas.get(id(metadata))
    if cached is not None and cached[0] is metadata:
        return cached[1]
    try:
        schema = metadata.to_openai_tool(skip_length_check=True)
    except Exception:  # noqa: BLE001 - the application's schema may fail anyhow; the tool still has a name
        schema = {"type": "function", "function": {"name": getattr(metadata, "name", None)}}
    if len(_tool_schemas) >= _TOOL_SCHEMA_CACHE:
        _tool_schemas.clear()
    _tool_schemas[id(metadata)] = (metadata, schema)
    return schema


def query_text(value: Any) -> Any:
    """A query given as a string or a ``QueryBundle``."""
    if value is None or isinstance(value, str):
        return value
    text = _fields(value).get("query_str")
    return text if text is not None else value


def nodes_output(nodes: Any) -> Any:
    """Retrieved ``NodeWithScore`` items as ``{id, text, score, metadata}``."""
    if not isinstance(nodes, Sequence) or isinstance(nodes, str):
        return nodes
    out = []
    for item in nodes:
        fields = _fields(item)
        node = fields.get("node", item)
        node_fields = _fields(node)
        text = node_fields.get("text")
        if text is None:
            get_content = getattr(node, "get_content", None)
            text = get_content() if callable(get_content) else None
        entry: dict[str, Any] = {"id": node_fields.get("id_"), "text": text}
        if fields.get("score") is not None:
            entry["score"] = fields["score"]
        if node_fields.get("metadata"):
            entry["metadata"] = node_fields["metadata"]
        out.append(entry)
    return out


def embeddings_output(embeddings: Any) -> Any:
    """A summary of computed vectors (count, dimensions): the vectors themselves are noise."""
    if not isinstance(embeddings, Sequence) or not embeddings:
        return None
    first = embeddings[0]
    if isinstance(first, Sequence):
        return {"embeddings": len(embeddings), "dimensions": len(first)}
    return {"embeddings": 1, "dimensions": len(embeddings)}


def text_output(result: Any) -> Any:
    """The answer of a ``Response``, ``AgentChatResponse``, ``ToolOutput``, ``ChatMessage``
    or ``AgentOutput`` (its ``response`` message, as :func:`message_later` has it)."""
    if result is None or isinstance(result, str):
        return result
    fields = _fields(result)
    response = fields.get("response")
    if isinstance(response, str):
        return response
    if "role" in fields and "blocks" in fields:
        return message_later(result)
    content = getattr(result, "content", None)
    if isinstance(content, str):
        return content
    if response is not None and response is not result:
        return text_output(response)
    return result


def tool_name(instance: Any) -> str:
    name = getattr(getattr(instance, "metadata", None), "name", None)
    return str(name) if name else type(instance).__name__


def tool_input(arguments: Mapping[str, Any]) -> Any:
    """A tool call's arguments from ``call(*args, **kwargs)``'s bound arguments."""
    kwargs = arguments.get("kwargs")
    args = arguments.get("args")
    if args:
        return {"args": list(args), **(kwargs or {})}
    if kwargs is not None:
        return kwargs
    return {k: v for k, v in arguments.items() if k != "self"}


def agent_input(arguments: Mapping[str, Any]) -> Any:
    """A workflow run's input: the user message when there is one, else the start event."""
    kwargs = arguments.get("kwargs") or {}
    start = arguments.get("start_event")
    user_msg = kwargs.get("user_msg") if isinstance(kwargs, Mapping) else None
    if user_msg is None and start is not None:
        user_msg = getattr(start, "user_msg", None)
    if user_msg is not None:
        return user_msg if isinstance(user_msg, str) else message_later(user_msg)
    if start is not None:
        return start
    return {k: v for k, v in kwargs.items()} if isinstance(kwargs, Mapping) and kwargs else None
