"""Looking at traces: the run tree built from stored events, and its text and HTML forms."""

from lunatrace.view.model import Run, Trace, build_trace
from lunatrace.view.text import render_text

__all__ = ["Run", "Trace", "build_trace", "render_text"]
