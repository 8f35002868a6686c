"""LlamaIndex integration: register once, every query, chat, agent and LLM call is traced.

Two ways in, matching LlamaIndex's two observability systems:

* ``instrument()`` / ``uninstrument()``: handlers on LlamaIndex's instrumentation
  dispatcher (recommended; sees agents, tools, workflow steps and streams).
* ``CallbackHandler()``: a legacy ``BaseCallbackHandler`` for
  ``Settings.callback_manager = CallbackManager([handler])``.

With both in place each run is reported once: the legacy handler stands down while
``instrument()`` is active. ``CallbackHandler`` is imported lazily because it subclasses
a ``llama_index.core`` class (about two seconds to import); ``instrument()`` needs only
the light ``llama_index_instrumentation`` package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lunatrace.integrations._requires import require

require("llama_index", ("llama_index_instrumentation", "llama_index.core"), "llama-index")

# The import below needs LlamaIndex, checked just above.
from lunatrace.integrations.llama_index.instrumentation import (  # noqa: E402
    instrument,
    is_active,
    uninstrument,
)

if TYPE_CHECKING:
    from lunatrace.integrations.llama_index.legacy import CallbackHandler

__all__ = ["CallbackHandler", "instrument", "is_active", "uninstrument"]


def __getattr__(name: str) -> Any:
    if name == "CallbackHandler":
        from lunatrace.integrations.llama_index.legacy import CallbackHandler

        return CallbackHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
