"""The LlamaIndex part of the demo: a RAG query over the bundled documents, fully offline."""

from __future__ import annotations

from importlib import resources
from typing import Any

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback

from lunatrace.integrations.llama_index import instrument


def bundled_documents() -> list[Document]:
    """The small Markdown files shipped in ``lunatrace/demo/docs``."""
    folder = resources.files("lunatrace.demo") / "docs"
    return [
        Document(text=entry.read_text(encoding="utf-8"), metadata={"file_name": entry.name})
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".md")
    ]


ANSWER = (
    "Because the Moon's gravity pulls the oceans into two bulges, one facing the Moon and one "
    "opposite, and the Earth turns through both every lunar day."
)


class DemoLLM(CustomLLM):
    """An offline LLM that answers the demo's question (LlamaIndex's ``MockLLM`` echoes
    ``text text text``): a demo should read like a product."""

    answer: str = ANSWER

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="demo-llm", num_output=64)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.answer)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = ""
        for word in self.answer.split(" "):
            delta = word if not text else " " + word
            text += delta
            yield CompletionResponse(text=text, delta=delta)


def run_rag(question: str = "Why do most coasts see two high tides a day?") -> str:
    """Index the documents with mock embeddings and answer with the demo's LLM."""
    instrument()
    Settings.llm = DemoLLM()
    Settings.embed_model = MockEmbedding(embed_dim=16)
    index = VectorStoreIndex.from_documents(bundled_documents())
    response = index.as_query_engine(similarity_top_k=2).query(question)
    return str(response)
