"""Framework-free core: configuration, wire events, run context, the tracer and delivery.

Nothing under ``lunatrace.core`` imports LangChain or LlamaIndex.
"""
