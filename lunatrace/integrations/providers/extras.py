"""The per-call extras a monitored client accepts, taken out before the client sees them.

The official Lunary SDK's ``monitor()`` lets a call carry ``user_id``, ``user_props``,
``tags``, ``metadata``, ``parent`` and a run ``name`` as keyword arguments; the
provider's client would refuse them (or, for ``metadata``, send them to the provider),
so they are popped from the call's keyword arguments first. A call without any of them
(the common case) costs one set intersection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

EXTRA_KEYWORDS = frozenset({"user_id", "user_props", "tags", "metadata", "parent", "name"})


class CallExtras(NamedTuple):
    """What one call says about its run (each ``None`` when not given)."""

    user_id: Any = None
    user_props: Mapping[str, Any] | None = None
    tags: list[str] | None = None
    metadata: Mapping[str, Any] | None = None
    parent: Any = None
    name: str | None = None


NO_EXTRAS = CallExtras()


def take_extras(kwargs: dict[str, Any], provider_metadata: frozenset[str] = frozenset()) -> CallExtras:
    """Pop the extras from a call's keyword arguments (in place) and return them.

    ``provider_metadata``: the keys of ``metadata`` the provider's API takes itself; they
    stay in the arguments (as ``metadata``), and the whole mapping is the run's metadata.

    Values are taken as given, except that tags and a name are made strings (one tag may
    be given alone); a mapping of the wrong kind is dropped rather than refused: the call
    itself must go through.
    """
    if not (kwargs.keys() & EXTRA_KEYWORDS):
        return NO_EXTRAS
    tags = kwargs.pop("tags", None)
    if isinstance(tags, list | tuple | set | frozenset):
        tags = [str(tag) for tag in tags]
    elif tags:
        tags = [str(tags)]
    user_props = kwargs.pop("user_props", None)
    metadata = kwargs.pop("metadata", None)
    if provider_metadata and isinstance(metadata, Mapping):
        forwarded = {key: value for key, value in metadata.items() if key in provider_metadata}
        if forwarded:
            kwargs["metadata"] = forwarded
    name = kwargs.pop("name", None)
    return CallExtras(
        user_id=kwargs.pop("user_id", None),
        user_props=user_props if isinstance(user_props, Mapping) else None,
        tags=tags or None,
        metadata=metadata if isinstance(metadata, Mapping) else None,
        parent=kwargs.pop("parent", None),
        name=None if name is None else str(name),
    )
