"""LangChain and LangGraph integration.

``CallbackHandler`` traces the runs of any call it is passed to
(``config={"callbacks": [CallbackHandler()]}``); :func:`instrument` traces every
LangChain run in the process without passing callbacks. Importing this module imports
``langchain_core`` (``import lunatrace`` alone does not).
"""

from __future__ import annotations

from lunatrace.integrations.langchain.handler import CallbackHandler
from lunatrace.integrations.langchain.instrument import instrument, instrumented_handler, uninstrument
from lunatrace.integrations.langchain.nesting import register as _register_nesting

_register_nesting()

__all__ = ["CallbackHandler", "instrument", "instrumented_handler", "uninstrument"]
