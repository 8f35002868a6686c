"""``lunatrace.show()``: look at a recorded trace where you are, notebook or terminal.

In a Jupyter kernel the trace is displayed as HTML (the same view as ``lunatrace ui``);
anywhere else it is printed as a text tree. Either way the :class:`~lunatrace.view.Trace`
is returned, and its ``_repr_html_`` renders it again as the last value of a cell.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from lunatrace.api import flush, get_tracer

if TYPE_CHECKING:
    from lunatrace.view.model import Trace


def in_notebook() -> bool:
    """Whether we run inside a Jupyter kernel (IPython with a kernel attached)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell: Any = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def show(trace_id: str | None = None, *, display: bool = True) -> Trace | None:
    """Display the trace ``trace_id`` (a full id or a unique prefix; default: the latest).

    Pending events are flushed first, so a run that just finished is included. Returns
    the trace, or ``None`` (with the reason printed) when there is nothing to show, e.g.
    when events go to a Lunary server rather than the local store.
    """
    # Imported here: ``import lunatrace`` must not pay for sqlite3 and the views.
    from lunatrace.core.transport.store import StoreError
    from lunatrace.view.load import TraceNotFound, load_trace
    from lunatrace.view.text import render_text

    tracer = get_tracer()
    flush()
    try:
        trace = load_trace(tracer.config.store_path, trace_id)
    except (TraceNotFound, StoreError) as exc:
        where = ""
        if tracer.config.uses_server:
            problem = getattr(getattr(tracer.sink, "destination", None), "unreachable", None)
            server = tracer.config.shown("api_url")
            where = (
                f" (the server at {server} cannot be reached: {problem}; events are retried,"
                f" then kept in {tracer.config.store_path})"
                if problem
                else f" (events are sent to {server}; look there)"
            )
        print(f"lunatrace: {exc}{where}", file=sys.stderr)
        return None
    if display:
        if in_notebook():
            from IPython.display import display as ipython_display

            ipython_display(trace)  # type: ignore[no-untyped-call]
        else:
            print(render_text(trace))
    return trace
