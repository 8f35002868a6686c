"""Which methods of which OpenAI client are traced, and how (see :mod:`..providers`)."""

from __future__ import annotations

from typing import Any, TypeVar

import openai

from lunatrace.integrations.openai.chat import ChatEndpoint
from lunatrace.integrations.openai.embeddings import EmbeddingsEndpoint
from lunatrace.integrations.openai.responses import ResponsesEndpoint
from lunatrace.integrations.providers import Endpoint, Patch, instrument, traced, traced_async, uninstrument

Client = TypeVar("Client")

_CHAT = ChatEndpoint()
_RESPONSES = ResponsesEndpoint()
_EMBEDDINGS = EmbeddingsEndpoint()
_METHODS: tuple[tuple[str, str, Endpoint], ...] = (
    ("chat.completions", "create", _CHAT),
    ("chat.completions", "parse", _CHAT),
    ("responses", "create", _RESPONSES),
    ("responses", "parse", _RESPONSES),
    ("embeddings", "create", _EMBEDDINGS),
)
SYNC_PATCHES = tuple(Patch(path, method, traced(endpoint)) for path, method, endpoint in _METHODS)
ASYNC_PATCHES = tuple(Patch(path, method, traced_async(endpoint)) for path, method, endpoint in _METHODS)


def _patches(client: Any) -> tuple[Patch, ...]:
    if isinstance(client, openai.AsyncOpenAI):  # AsyncAzureOpenAI too
        return ASYNC_PATCHES
    if isinstance(client, openai.OpenAI):  # AzureOpenAI too
        return SYNC_PATCHES
    raise TypeError(
        "lunatrace.integrations.openai.monitor() takes an OpenAI, AsyncOpenAI, AzureOpenAI or "
        f"AsyncAzureOpenAI client, not {type(client).__qualname__}"
    )


def monitor(client: Client) -> Client:
    """Trace ``client``'s calls in place and return it (twice is the same as once).

    Only this instance is traced: ``client.with_options(...)`` and ``client.copy()``
    make new clients, which need a ``monitor`` of their own.
    """
    instrument(client, _patches(client))
    return client


def unmonitor(client: Client) -> Client:
    """Restore ``client``'s own methods and return it."""
    _patches(client)
    uninstrument(client)
    return client
