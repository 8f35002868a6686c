"""Offline fake models for examples and tests.

LangChain's stock fake chat models (``FakeListChatModel``, ``GenericFakeChatModel``)
replay canned answers but raise ``NotImplementedError`` in ``bind_tools``, so a
``create_agent`` agent or any chain that binds tools cannot use them. ``ScriptedChatModel``
is a ``GenericFakeChatModel`` that binds tools and answers with the messages it is given,
tool calls included, the way a provider's model does: it reports a model id, its
parameters and token usage, so traces look like a real model's.

```python
from lunatrace.testing import ScriptedChatModel, tool_calls

model = ScriptedChatModel(messages=[tool_calls(("get_weather", {"city": "Oslo"})), "Sunny."])
```

This module needs LangChain (``pip install 'lunatrace[langchain]'``); ``import lunatrace``
does not import it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import field_validator

__all__ = ["ScriptedChatModel", "tool_calls"]


class ScriptedChatModel(GenericFakeChatModel):
    """Answers each call with the next scripted message, and supports ``bind_tools``.

    ``messages``: the answers in order, as a list or any iterator of strings and
    ``AIMessage``s (``tool_calls(...)`` builds one that asks for tools). A call made after
    the last answer raises ``RuntimeError``. Each answer carries ``usage_metadata`` (a
    word count) and ``response_metadata`` with ``model_name``, unless it has its own.
    Streaming yields the text word by word, then a last chunk with the tool calls and
    usage.
    """

    model_name: str = "scripted-chat-model"
    temperature: float = 0.0

    @field_validator("messages", mode="before")
    @classmethod
    def _as_iterator(cls, value: Any) -> Any:
        if isinstance(value, Iterable) and not isinstance(value, (Iterator, str, BaseMessage)):
            return iter(list(value))
        return value

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        """Bind tools (``BaseTool``s, functions, pydantic classes, schemas) as OpenAI tools."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _next_message(self, messages: list[BaseMessage]) -> AIMessage:
        try:
            message = next(self.messages)
        except StopIteration:
            raise RuntimeError("ScriptedChatModel: no scripted message left for this call") from None
        if isinstance(message, str):
            message = AIMessage(content=message)
        update: dict[str, Any] = {}
        if message.usage_metadata is None:
            prompt = sum(len(str(m.content).split()) for m in messages) + 8
            completion = max(1, len(str(message.content).split())) + 4 * len(message.tool_calls)
            update["usage_metadata"] = {
                "input_tokens": prompt,
                "output_tokens": completion,
                "total_tokens": prompt + completion,
            }
        if not message.response_metadata:
            update["response_metadata"] = {"model_name": self.model_name, "finish_reason": "stop"}
        return message.model_copy(update=update) if update else message

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next_message(messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._next_message(messages)
        text = message.content if isinstance(message.content, str) else ""
        words = text.split(" ") if text else []
        for index, word in enumerate(words):
            token = word if index == len(words) - 1 else word + " "
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token, id=message.id))
            if run_manager:
                run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk
        last = AIMessageChunk(
            content="",
            id=message.id,
            tool_call_chunks=[
                tool_call_chunk(name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=index)
                for index, call in enumerate(message.tool_calls)
            ],
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
        )
        chunk = ChatGenerationChunk(message=last)
        if run_manager:
            run_manager.on_llm_new_token("", chunk=chunk)
        yield chunk


def tool_calls(*calls: tuple[str, dict[str, Any]], content: str = "") -> AIMessage:
    """An assistant message asking for the given ``(tool name, arguments)`` calls.

    The calls get the ids ``call_1``, ``call_2``, ... in order.
    """
    return AIMessage(
        content=content,
        tool_calls=[
            {"name": name, "args": args, "id": f"call_{index}", "type": "tool_call"}
            for index, (name, args) in enumerate(calls, 1)
        ],
    )
