"""A clear error when an integration's framework is not installed.

Without it, ``import lunatrace.integrations.langchain`` on a bare install fails deep
inside with ``No module named 'langchain_core'``; this says which extra to install.
"""

from __future__ import annotations

import importlib.util


def require(integration: str, modules: tuple[str, ...], extra: str) -> None:
    """Raise ``ImportError`` naming the extra unless one of ``modules`` can be imported."""
    for module in modules:
        try:
            if importlib.util.find_spec(module) is not None:
                return
        except (ImportError, ValueError):  # a parent package missing, or a broken spec
            continue
    raise ImportError(
        f"lunatrace.integrations.{integration} needs {' or '.join(modules)}, which is not "
        f"installed; install it with: pip install 'lunatrace[{extra}]'"
    )
