"""Framework and provider integrations: thin translations of each framework's hooks, or
each provider client's calls, into Tracer calls.

Import the one you need (``lunatrace.integrations.langchain``,
``lunatrace.integrations.llama_index``, ``lunatrace.integrations.openai``,
``lunatrace.integrations.anthropic``; ``lunatrace.monitor(client)`` imports the provider's
own); importing this package imports no framework or provider client.
"""
