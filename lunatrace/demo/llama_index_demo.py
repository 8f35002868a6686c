"""The LlamaIndex part of the demo: a RAG query over the bundled documents, fully offline."""

from __future__ import annotations

from importlib import resources

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM

from lunatrace.integrations.llama_index import instrument


def bundled_documents() -> list[Document]:
    """The small Markdown files shipped in ``lunatrace/demo/docs``."""
    folder = resources.files("lunatrace.demo") / "docs"
    return [
        Document(text=entry.read_text(encoding="utf-8"), metadata={"file_name": entry.name})
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".md")
    ]


def run_rag(question: str = "Why do most coasts see two high tides a day?") -> str:
    """Index the documents with mock embeddings and answer with a mock LLM."""
    instrument()
    Settings.llm = MockLLM(max_tokens=24)
    Settings.embed_model = MockEmbedding(embed_dim=16)
    index = VectorStoreIndex.from_documents(bundled_documents())
    response = index.as_query_engine(similarity_top_k=2).query(question)
    return str(response)
