"""Instrumenting one client instance in place, and undoing it.

A provider client reaches its endpoints through resource objects that it creates once
and keeps (``client.chat.completions``, ``client.messages``). A method is traced by
setting, on that resource object, an instance attribute that wraps the bound method:
the class, every other client and the client's type stay untouched, the wrapper
carries the original's name, docstring and signature (``functools.wraps``: ``help()``
and ``inspect.signature`` show the real method), and removing the attribute restores
the original. The client keeps a marker listing what was replaced, which makes a
second ``monitor`` a no-op and ``unmonitor`` exact.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from lunatrace.core.guard import failed

MARKER = "_lunatrace_monitored"

Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


class Patch(NamedTuple):
    """Trace ``method`` of the resource at ``path`` (dotted, from the client) with ``wrap``.

    ``wrap`` receives the bound original and returns the traced function; the signature
    and docstring are copied onto the result here. A path or method the installed client
    release does not have is skipped (the Responses API of an old release, say).
    """

    path: str
    method: str
    wrap: Wrapper


class _Applied(NamedTuple):
    resource: Any
    method: str
    previous: Any  # the resource's own attribute of that name before, or _ABSENT


_ABSENT = object()


def is_monitored(client: Any) -> bool:
    return MARKER in _own(client)


def instrument(client: Any, patches: Iterable[Patch]) -> int:
    """Apply ``patches`` to ``client`` unless it is already monitored; how many applied."""
    own = _own(client)
    if MARKER in own:
        return 0
    applied: list[_Applied] = []
    for patch in patches:
        resource = _resolve(client, patch.path)
        original = getattr(resource, patch.method, None) if resource is not None else None
        if not callable(original):
            continue
        traced = functools.wraps(original)(patch.wrap(original))
        previous = _own(resource).get(patch.method, _ABSENT)
        setattr(resource, patch.method, traced)
        applied.append(_Applied(resource, patch.method, previous))
    setattr(client, MARKER, applied)
    return len(applied)


def uninstrument(client: Any) -> bool:
    """Restore every method :func:`instrument` replaced; ``False`` if none was."""
    applied: list[_Applied] | None = _own(client).get(MARKER)
    if applied is None:
        return False
    for entry in reversed(applied):
        if entry.previous is _ABSENT:
            _own(entry.resource).pop(entry.method, None)
        else:
            setattr(entry.resource, entry.method, entry.previous)
    delattr(client, MARKER)
    return True


def _own(obj: Any) -> dict[str, Any]:
    try:
        own: dict[str, Any] = vars(obj)
    except TypeError:  # no __dict__: nothing of ours can be on it
        return {}
    return own


def _resolve(client: Any, path: str) -> Any:
    """The resource at ``path``, or ``None``: a release without it, or one whose resource
    fails to load (a client release that cannot import its own module for it) leaves
    that method untraced, and the others traced."""
    node = client
    try:
        for name in path.split("."):
            node = getattr(node, name, None)
            if node is None:
                return None
    except Exception as exc:  # noqa: BLE001 - the client's own lazy import, whatever it raises
        failed(f"instrumenting {type(client).__name__}.{path}", exc, "its methods are not traced")
        return None
    return node
