"""OpenAI client integration: ``monitor(client)`` traces one ``openai`` client in place.

Traced: ``chat.completions.create`` (also with ``stream=True``, and through
``chat.completions.stream``), ``chat.completions.parse``, ``responses.create`` (also
streamed, and through ``responses.stream``), ``responses.parse`` and
``embeddings.create``, for ``OpenAI``, ``AsyncOpenAI``, ``AzureOpenAI`` and
``AsyncAzureOpenAI``. Importing this module imports ``openai`` (``import lunatrace``
alone does not). See docs/openai.md.
"""

from __future__ import annotations

from lunatrace.integrations._requires import require

require("openai", ("openai",), "openai")

# The import below needs openai, checked just above.
from lunatrace.integrations.openai.client import monitor, unmonitor  # noqa: E402

__all__ = ["monitor", "unmonitor"]
