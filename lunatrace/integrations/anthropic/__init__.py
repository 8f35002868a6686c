"""Anthropic client integration: every Messages API call of one client, as an llm run.

``monitor(client)`` (also ``lunatrace.monitor(client)``) instruments an ``Anthropic`` or
``AsyncAnthropic`` instance in place (any client whose ``messages`` is the SDK's
``Messages`` resource: ``AnthropicVertex`` and ``AnthropicBedrock`` too):
``messages.create`` (plain or ``stream=True``), ``messages.stream(...)``,
``messages.parse`` where the release has it, and the same of ``beta.messages``.
``unmonitor(client)`` undoes it. See docs/anthropic.md. Importing this module imports
``anthropic`` (``import lunatrace`` alone does not).
"""

from __future__ import annotations

from typing import Any, TypeVar

from lunatrace.integrations._requires import require

require("anthropic", ("anthropic",), "anthropic")

# The imports below need anthropic, checked just above.
from anthropic.resources import AsyncMessages, Messages  # noqa: E402

from lunatrace.integrations.anthropic.endpoints import (  # noqa: E402
    MESSAGES,
    traced_async_stream,
    traced_stream,
)
from lunatrace.integrations.providers import Patch, instrument, is_monitored, traced, traced_async  # noqa: E402
from lunatrace.integrations.providers import uninstrument as _uninstrument  # noqa: E402
from lunatrace.integrations.providers.patching import Wrapper  # noqa: E402

Client = TypeVar("Client")

# The Messages API and its beta twin (``client.beta.messages``: the same calls with
# ``betas=[...]``, the same message and event shapes).
RESOURCES = ("messages", "beta.messages")


def _patches_of(create: Wrapper, stream: Wrapper) -> tuple[Patch, ...]:
    methods = (("create", create), ("parse", create), ("stream", stream))
    return tuple(Patch(path, method, wrap) for path in RESOURCES for method, wrap in methods)


SYNC_PATCHES = _patches_of(traced(MESSAGES), traced_stream)
ASYNC_PATCHES = _patches_of(traced_async(MESSAGES), traced_async_stream)


def _patches(client: Any) -> tuple[Patch, ...]:
    messages = getattr(client, "messages", None)
    if isinstance(messages, AsyncMessages):
        return ASYNC_PATCHES
    if isinstance(messages, Messages):
        return SYNC_PATCHES
    raise TypeError(
        f"lunatrace.integrations.anthropic.monitor() takes an Anthropic client, not {type(client)!r}"
    )


def monitor(client: Client) -> Client:
    """Trace every Messages API call of ``client`` (in place; a second call does nothing)
    and return it. Raises ``TypeError`` for an object that is not an Anthropic client."""
    patches = _patches(client)
    instrument(client, patches)
    return client


def unmonitor(client: Client) -> Client:
    """Restore the methods :func:`monitor` replaced (nothing for a client never monitored)."""
    _uninstrument(client)
    return client


__all__ = ["is_monitored", "monitor", "unmonitor"]
