"""Tell core which LangChain run is in progress, so decorated functions nest under it.

Inside a ``RunnableLambda``, a tool or a graph node, LangChain keeps the child config
of the running step in ``var_child_runnable_config``; its callback manager's
``parent_run_id`` is the step's own run id. Core asks this resolver when a
``@lunatrace.trace`` function starts, and nests the function under that run when a
lunatrace handler traces it (folded internal runs answer with their shown ancestor).

The handler's runs enter the tracer's run registry on the background worker, maybe
after the function starts, so the resolver tells the registry about the run it names
(``remember``): the function then nests under it and follows its trace's sampling.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables.config import var_child_runnable_config

from lunatrace.api import get_tracer
from lunatrace.core.context import register_framework_resolver
from lunatrace.integrations.langchain.handler import HIDDEN, CallbackHandler


def current_langchain_run() -> str | None:
    """The id of the traced LangChain run whose body is executing, else ``None``."""
    config = var_child_runnable_config.get()
    if not config:
        return None
    manager = config.get("callbacks")
    run_id: Any = getattr(manager, "parent_run_id", None)
    if run_id is None:
        return None
    handler = next((h for h in getattr(manager, "handlers", ()) if isinstance(h, CallbackHandler)), None)
    if handler is None:
        return None  # LangChain runs no lunatrace handler sees are not traced
    while HIDDEN and run_id in HIDDEN:
        run_id = HIDDEN[run_id]  # a folded run: its shown ancestor
        if run_id is None:
            return None
    rid = str(run_id)
    tracer = get_tracer()
    if handler.tracer() is not tracer:
        return None  # the handler sends to another project: nothing here can nest under it
    if not tracer.is_known(rid):
        tracer.runs.remember(rid, "chain", sampled=run_id not in handler._unsampled)
    return rid


def register() -> None:
    register_framework_resolver(current_langchain_run)
