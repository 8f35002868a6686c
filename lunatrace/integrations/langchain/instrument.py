"""Trace every LangChain run in the process, without passing callbacks.

LangChain's configure hook (``register_configure_hook``) adds a handler to every
callback manager it builds. The hook only calls ``.get()`` on what it is given, so a
process-wide holder is registered instead of a ``ContextVar``: the handler is then seen
in every thread and asyncio task, and :func:`uninstrument` takes effect everywhere at once.

The hook is registered with ``CallbackHandler`` as its class, so LangChain adds the
process-wide handler only to managers that hold no lunatrace handler yet: a handler
passed explicitly to a call wins (its options apply), and no event is recorded twice.
"""

from __future__ import annotations

import threading
from typing import Any, cast

from lunatrace.integrations.langchain.handler import CallbackHandler

_lock = threading.Lock()
_registered = False


class _ProcessWide:
    """The object LangChain's configure hook reads the handler from (``get()``)."""

    handler: CallbackHandler | None = None

    def get(self) -> CallbackHandler | None:
        return self.handler


_holder = _ProcessWide()


def instrument(handler: CallbackHandler | None = None, **options: Any) -> CallbackHandler:
    """Trace every LangChain run in this process; returns the handler in use.

    Idempotent: calling it again without arguments keeps the current handler. Pass a
    handler, or ``CallbackHandler`` options (``user_id=``, ``tags=``...), to replace it.
    """
    global _registered
    with _lock:
        if handler is None:
            handler = _holder.handler if _holder.handler is not None and not options else None
            handler = handler or CallbackHandler(**options)
        if not _registered:
            from langchain_core.tracers.context import register_configure_hook

            register_configure_hook(cast(Any, _holder), True, CallbackHandler, None)
            _registered = True
        _holder.handler = handler
        return handler


def uninstrument() -> None:
    """Stop tracing runs that were not given a handler explicitly."""
    with _lock:
        _holder.handler = None


def instrumented_handler() -> CallbackHandler | None:
    """The process-wide handler, or ``None`` when not instrumented."""
    return _holder.handler
