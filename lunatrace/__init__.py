"""lunatrace: trace LangChain, LangGraph, LlamaIndex, OpenAI and Anthropic clients and
plain Python runs into Lunary.

Importing this package is cheap: it imports neither LangChain, LlamaIndex nor a provider
client. The integrations live in :mod:`lunatrace.integrations` and are imported when
used (``monitor(client)`` imports the one for its client).
"""

from lunatrace._version import __version__
from lunatrace.api import (
    Thread,
    configure,
    current_run_id,
    feedback,
    flush,
    get_tracer,
    monitor,
    open_thread,
    parent,
    project,
    shutdown,
    stats,
    unmonitor,
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
    "monitor",
    "open_thread",
    "parent",
    "project",
    "show",
    "shutdown",
    "stats",
    "tags",
    "trace",
    "unmonitor",
]
