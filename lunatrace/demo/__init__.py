"""The offline demo behind ``lunatrace demo``: real LangChain, LangGraph and LlamaIndex
runs with scripted models, traced through the normal path.

Importing this package imports no framework; each part imports its own when it runs.
"""

from lunatrace.demo.runner import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
