"""lunatrace: trace LangChain, LangGraph, LlamaIndex and plain Python runs into Lunary.

Importing this package is cheap: it imports neither LangChain nor LlamaIndex. The
integrations live in :mod:`lunatrace.integrations` and are imported when used.
"""

from lunatrace._version import __version__
from lunatrace.api import (
    Thread,
    configure,
    current_run_id,
    feedback,
    flush,
    get_tracer,
    open_thread,
    parent,
    project,
    shutdown,
    stats,
)
from lunatrace.core.config import Config, ConfigError
from lunatrace.core.context import identify, metadata, tags
from lunatrace.core.ignore import Ignore
from lunatrace.decorators import trace
from lunatrace.notebook import show

__all__ = [
    "Config",
    "ConfigError",
    "Ignore",
    "Thread",
    "__version__",
    "configure",
    "current_run_id",
    "feedback",
    "flush",
    "get_tracer",
    "identify",
    "metadata",
    "open_thread",
    "parent",
    "project",
    "show",
    "shutdown",
    "stats",
    "tags",
    "trace",
]
