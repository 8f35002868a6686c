"""What every provider integration (``openai``, ``anthropic``) is built on; imports no provider.

A provider integration is a translation: for each traced method it says what the call
asked and what the provider answered; this package does the rest, over core, the same
way for every provider. Writing one takes four pieces:

1. **An endpoint** per method (:class:`~.methods.Endpoint`), with ``run_type``
   (``"llm"``, ``"embed"``) and three cheap methods run on the caller's thread:

   - ``request(kwargs) -> Request | None``: the model asked for, the run's input
     (OpenAI-format messages; copy any list the application may change after the call,
     and convert on the worker with ``core.serialize.Deferred``) and its params under
     OpenAI names (:func:`.params.pick` with the provider's table of names: tools become
     OpenAI function schemas, sentinels such as ``NOT_GIVEN`` are skipped;
     :func:`.params.snapshot` copies a list and reads a generator once). ``None`` leaves
     the call untraced (:func:`.params.is_raw_response`: a ``with_raw_response`` call).
   - ``answer(result) -> Answer``: the output message, usage in the wire shape
     (``core.usage.usage_from_mapping``; ``None`` makes core estimate and flag it), the
     model id the provider answered with, and extra metadata.
   - ``accumulator(kwargs) -> Accumulator | None``: a fresh collector when the call
     streams. Its ``add(item) -> bool`` takes each streamed item (``True``: the item
     carried output, for the time to first token), ``model`` is the model the stream
     reports, ``answer()`` the answer so far (partial if the stream stopped early).

2. **Patches**: ``Patch("chat.completions", "create", traced(endpoint))`` for a
   synchronous client, ``traced_async(endpoint)`` for an asynchronous one. The wrapper
   pops the per-call extras (``user_id``, ``user_props``, ``tags``, ``metadata``,
   ``parent``, ``name``: :mod:`.extras`) before the client sees the arguments, returns
   the client's own result (a stream: the same object, observed in place,
   :mod:`.inplace`) and re-raises the client's own exception (recorded with its message
   on the run).

3. **monitor/unmonitor** for the provider's module: pick the patches by the client's
   class, then ``instrument(client, patches)`` / ``uninstrument(client)``
   (:mod:`.patching`: in place, idempotent, reversible, signatures kept).
   ``lunatrace.monitor(client)`` dispatches to ``lunatrace.integrations.<module>``
   by the top-level module of the client's class, and calls its ``monitor(client)``.

4. Nothing else: the run (:class:`~.calls.ProviderCall`) is started when the provider
   answers, named by the answering model and stamped at the request's time; it nests
   under whatever is current where the call was made (``@trace``, ``parent``, a
   LangChain or LlamaIndex run) and takes the context's user, tags and metadata; a
   stream's run ends when it is exhausted, closed or garbage-collected.

A fake provider server for the tests is in ``tests/support/fake_provider.py``.
"""

from __future__ import annotations

from lunatrace.integrations.providers.calls import Answer, ProviderCall, Request
from lunatrace.integrations.providers.extras import EXTRA_KEYWORDS, CallExtras, take_extras
from lunatrace.integrations.providers.inplace import in_place, in_place_async
from lunatrace.integrations.providers.methods import Endpoint, traced, traced_async
from lunatrace.integrations.providers.patching import Patch, instrument, is_monitored, uninstrument
from lunatrace.integrations.providers.streams import Accumulator, StreamRun

__all__ = [
    "EXTRA_KEYWORDS",
    "Accumulator",
    "Answer",
    "CallExtras",
    "Endpoint",
    "Patch",
    "ProviderCall",
    "Request",
    "StreamRun",
    "in_place",
    "in_place_async",
    "instrument",
    "is_monitored",
    "take_extras",
    "traced",
    "traced_async",
    "uninstrument",
]
