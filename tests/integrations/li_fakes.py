"""Scripted LlamaIndex models and tiny documents for the LlamaIndex integration tests.

Only LlamaIndex's own mock classes are used (``MockLLM``, ``MockEmbedding``,
``MockFunctionCallingLLM``) plus a small ``CustomLLM`` that replays scripted texts, the
way the LlamaIndex docs build custom models. Importing this module imports
``llama_index.core`` (about two seconds), so test modules share it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import CustomLLM, MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool
from pydantic import Field, PrivateAttr

TEXTS = ("Cats sleep most of the day.", "Dogs bark at the mailman.", "Birds sing at dawn.")


def documents() -> list[Document]:
    return [Document(text=text, metadata={"source": f"doc-{i}"}) for i, text in enumerate(TEXTS)]


def use_mock_models() -> None:
    """LlamaIndex's global models: a MockLLM (6 tokens) and an 8-dimension MockEmbedding."""
    Settings.llm = MockLLM(max_tokens=6)
    Settings.embed_model = MockEmbedding(embed_dim=8)


def build_index() -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(documents())


class ScriptedLLM(CustomLLM):
    """Replays ``script`` one text per call; raises ``fail_with`` instead when set (when
    streaming, after ``fail_after_words`` words). Completions report ``raw`` and
    ``additional_kwargs`` as a provider integration would."""

    script: list[str] = Field(default_factory=list)
    model: str = "scripted-1"
    temperature: float = 0.3
    max_tokens: int = 64
    _calls: int = PrivateAttr(default=0)
    fail_with: Any = None
    fail_after_words: int | None = None
    raw: Any = Field(
        default_factory=lambda: {
            "usage": {"prompt_tokens": 11, "completion_tokens": 7},
            "model": "scripted-1-2026",
        }
    )
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model, num_output=self.max_tokens)

    def _next(self) -> str:
        if self.fail_with is not None and self.fail_after_words is None:
            raise self.fail_with
        text = self.script[min(self._calls, len(self.script) - 1)]
        self._calls += 1
        return text

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._next(), raw=self.raw, additional_kwargs=self.extra)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self._next()

        def gen() -> Iterator[CompletionResponse]:
            sent = ""
            for index, word in enumerate(text.split(" ")):
                if index == self.fail_after_words:
                    raise self.fail_with
                delta = word if not sent else " " + word
                sent += delta
                yield CompletionResponse(text=sent, delta=delta)

        return gen()


REACT_SCRIPT = [
    'Thought: I need the weather tool.\nAction: get_weather\nAction Input: {"city": "Paris"}',
    "Thought: I can answer without using any more tools.\nAnswer: It is sunny in Paris.",
]


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}"


def get_traffic(city: str) -> str:
    """Current traffic for a city."""
    raise ValueError("traffic API down")


def weather_tools() -> list[FunctionTool]:
    return [FunctionTool.from_defaults(get_weather), FunctionTool.from_defaults(get_traffic)]


def tool_calling_script() -> Any:
    """A MockFunctionCallingLLM response generator: call both tools, then answer."""

    def respond(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        if any(m.role == MessageRole.TOOL for m in messages):
            return ChatMessage(role="assistant", content="Sunny in Paris; traffic unknown.")
        return ChatMessage(
            role="assistant",
            blocks=[
                TextBlock(text="Checking."),
                ToolCallBlock(tool_call_id="call-w", tool_name="get_weather", tool_kwargs={"city": "Paris"}),
                ToolCallBlock(tool_call_id="call-t", tool_name="get_traffic", tool_kwargs={"city": "Paris"}),
            ],
        )

    return respond


def tool_calling_llm() -> MockFunctionCallingLLM:
    return MockFunctionCallingLLM(response_generator=tool_calling_script())


# --- reading what the server stored ------------------------------------------------------


def delivered(server: Any, allow_parents: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Flush lunatrace, then the events the fake Lunary stored, checked to form valid trees."""
    import lunatrace
    from tests.support.trees import assert_valid_tree

    assert lunatrace.flush(10), "events not delivered in time"
    events = list(server.events)
    assert not server.unmatched, f"ends without a stored start: {server.unmatched}"
    assert_valid_tree(events, allow_parents=allow_parents)
    return events


def starts_of(events: Sequence[dict[str, Any]], run_type: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "start" and (run_type is None or e["type"] == run_type)]


def shape(events: Sequence[dict[str, Any]], parent: str | None = None) -> list[Any]:
    """The run tree under ``parent`` as nested ``(type, name, [children])`` tuples, in start order."""
    return [
        (e["type"], e.get("name"), shape(events, e["runId"]))
        for e in events
        if e["event"] == "start" and e.get("parentRunId") == parent
    ]


def finish(events: Sequence[dict[str, Any]], run_id: str) -> dict[str, Any]:
    from tests.support.trees import end_of

    return end_of(events, run_id)
