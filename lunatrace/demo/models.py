"""A scripted chat model for offline demos: LangChain's own fake, behaving like a provider.

``GenericFakeChatModel`` replays messages but cannot bind tools and reports no model name
or usage. This subclass adds those, so traces look like a real model's: the model id,
parameters, token usage and tool calls all show up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool


class ScriptedChatModel(GenericFakeChatModel):
    """Answers with the next scripted message (``messages``: an iterator of AIMessage or str)."""

    model_name: str = "demo-chat-model"
    temperature: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "scripted-demo"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = next(self.messages)
        if isinstance(message, str):
            message = AIMessage(content=message)
        prompt = sum(len(str(m.content).split()) for m in messages) + 8
        completion = max(1, len(str(message.content).split())) + 4 * len(message.tool_calls)
        message = message.model_copy(
            update={
                "usage_metadata": {
                    "input_tokens": prompt,
                    "output_tokens": completion,
                    "total_tokens": prompt + completion,
                },
                "response_metadata": {"model_name": self.model_name, "finish_reason": "stop"},
            }
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def tool_calls(*calls: tuple[str, dict[str, Any]]) -> AIMessage:
    """An assistant message asking for the given ``(tool name, arguments)`` calls."""
    return AIMessage(
        content="",
        tool_calls=[
            {"name": name, "args": args, "id": f"call_{index}", "type": "tool_call"}
            for index, (name, args) in enumerate(calls, 1)
        ],
    )
