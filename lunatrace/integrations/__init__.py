"""Framework integrations: thin translations of each framework's hooks into Tracer calls.

Import the one you need (``lunatrace.integrations.langchain``,
``lunatrace.integrations.llama_index``); importing this package imports no framework.
"""
