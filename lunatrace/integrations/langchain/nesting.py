"""Tell core which LangChain run is in progress, so decorated functions nest under it.

Inside a ``RunnableLambda``, a tool or a graph node, LangChain keeps the child config
of the running step in ``var_child_runnable_config``; its callback manager's
``parent_run_id`` is the step's own run id. Core asks this resolver when a
``@lunatrace.trace`` function starts, and nests the function under that run when the
tracer knows it (folded internal runs answer with their shown ancestor).
"""

from __future__ import annotations

from langchain_core.runnables.config import var_child_runnable_config

from lunatrace.api import get_tracer
from lunatrace.core.context import register_framework_resolver
from lunatrace.integrations.langchain.handler import HIDDEN


def current_langchain_run() -> str | None:
    """The id of the traced LangChain run whose body is executing, else ``None``."""
    config = var_child_runnable_config.get()
    if not config:
        return None
    run_id = getattr(config.get("callbacks"), "parent_run_id", None)
    if run_id is None:
        return None
    shown = HIDDEN.get(str(run_id), str(run_id)) if HIDDEN else str(run_id)
    if isinstance(shown, str) and get_tracer().is_known(shown):
        return shown
    return None


def register() -> None:
    register_framework_resolver(current_langchain_run)
