"""LangChain and LangGraph integration.

``CallbackHandler`` traces the runs of any call it is passed to
(``config={"callbacks": [CallbackHandler()]}``); :func:`instrument` traces every
LangChain run in the process without passing callbacks. Importing this module imports
``langchain_core`` (``import lunatrace`` alone does not).
"""

from __future__ import annotations

from lunatrace.integrations._requires import require

require("langchain", ("langchain_core",), "langchain")

# The imports below need langchain_core, checked just above.
from lunatrace.integrations.langchain.handler import CallbackHandler, LunaryCallbackHandler  # noqa: E402
from lunatrace.integrations.langchain.instrument import (  # noqa: E402
    instrument,
    instrumented_handler,
    uninstrument,
)
from lunatrace.integrations.langchain.nesting import register as _register_nesting  # noqa: E402

_register_nesting()

__all__ = ["CallbackHandler", "LunaryCallbackHandler", "instrument", "instrumented_handler", "uninstrument"]
