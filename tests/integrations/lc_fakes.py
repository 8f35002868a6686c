"""LangChain's own fake models, extended the way real providers behave, plus helpers.

``FakeToolChatModel`` is a ``GenericFakeChatModel`` that, like real chat integrations,
reports a model name, usage metadata and tool calls, supports ``bind_tools`` and
streams text then a final chunk carrying tool-call chunks and usage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.retrievers import BaseRetriever
from langchain_core.utils.function_calling import convert_to_openai_tool


class FakeToolChatModel(GenericFakeChatModel):
    """Answers from ``messages`` (an iterator of AIMessage or str), like a real provider."""

    model_name: str = "fake-model-1"
    temperature: float = 0.3
    max_tokens: int = 256
    fail_times: int = 0
    usage: dict[str, Any] | None = None

    @property
    def _llm_type(self) -> str:
        return "fake-tool-chat-model"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "temperature": self.temperature}

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _next_message(self) -> AIMessage:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("model 500")
        message = next(self.messages)
        if isinstance(message, str):
            message = AIMessage(content=message)
        usage = self.usage or {"input_tokens": 12, "output_tokens": 7, "total_tokens": 19}
        return message.model_copy(
            update={
                "usage_metadata": usage,
                "response_metadata": {"model_name": f"{self.model_name}-2026", "finish_reason": "stop"},
            }
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next_message())])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._next_message()
        text = message.content if isinstance(message.content, str) else ""
        for word in text.split(" ") if text else []:
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
        last = AIMessageChunk(
            content="",
            tool_call_chunks=[
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(message.tool_calls)
            ],
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
        )
        chunk = ChatGenerationChunk(message=last)
        if run_manager:
            run_manager.on_llm_new_token("", chunk=chunk)
        yield chunk


def tool_call_message(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    call = {"name": name, "args": args, "id": call_id, "type": "tool_call"}
    return AIMessage(content="", tool_calls=[call])


class TinyRetriever(BaseRetriever):
    """Returns documents whose text shares a word with the query."""

    documents: list[Document]
    fail: bool = False

    def _get_relevant_documents(self, query: str, *, run_manager: Any = None) -> list[Document]:
        if self.fail:
            raise ConnectionError("vector store down")
        words = set(query.lower().split())
        return [d for d in self.documents if words & set(d.page_content.lower().split())]


def _version(package: str) -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(part) for part in version(package).split(".")[:3] if part.isdigit())


# create_agent marks its root with ``lc_agent_name`` since langchain 1.2.4; before that a
# create_agent root cannot be told from any other graph and is traced as a chain.
AGENT_ROOT_TYPE = "agent" if _version("langchain") >= (1, 2, 4) else "chain"


def tool_call_id(events: list[dict[str, Any]], run: dict[str, Any]) -> Any:
    """A tool run's call id: on its start (newer LangChain) or merged in on its end (older)."""
    ends = [e for e in events if e.get("runId") == run["runId"] and e["event"] in ("end", "error")]
    for event in (run, *ends):
        if "toolCallId" in event.get("metadata", {}):
            return event["metadata"]["toolCallId"]
    return None
