"""Ignore rules: runs left out of a trace by type and name, with or without their children.

A rule (:class:`Ignore`) matches a run by its recorded type (``"chain"``, ``"llm"``,
``"tool"``...) and/or its name as a shell wildcard pattern (:func:`fnmatch.fnmatchcase`:
``*``, ``?``, ``[...]``, case-sensitive). An ignored run is never sent; its children are
either attached to its nearest kept ancestor (``children="reparent"``, the default) or
left out with it (``children="drop"``). A plain string is a shorthand: one of the run
types (:data:`~lunatrace.core.events.RUN_TYPES`) is a type rule, anything else a name
pattern (``Ignore(name="tool")`` matches a run *named* ``tool``).

:class:`IgnoreRules` is a validated list of rules; it answers, for a run type and name,
the rule that applies (``None``: keep the run). When several rules match, one that drops
the children wins.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from fnmatch import translate
from typing import Any, Literal

from lunatrace.core.events import RUN_TYPES

REPARENT = "reparent"
DROP = "drop"
CHILDREN = (REPARENT, DROP)
_WILDCARDS = re.compile(r"[*?\[]")
_MAX_CACHED = 4096


@dataclasses.dataclass(frozen=True)
class Ignore:
    """Leave out the runs of ``type`` and/or whose name matches ``name`` (a wildcard pattern).

    ``children``: ``"reparent"`` (the default) attaches the run's children to its nearest
    kept ancestor; ``"drop"`` leaves them out too, with all their descendants.
    """

    type: str | None = None
    name: str | None = None
    children: Literal["reparent", "drop"] = "reparent"

    def __post_init__(self) -> None:
        if self.type is None and self.name is None:
            raise ValueError("an ignore rule needs a type, a name pattern or both")
        if self.type is not None and self.type not in RUN_TYPES:
            raise ValueError(f"unknown run type {self.type!r} (one of {', '.join(sorted(RUN_TYPES))})")
        if self.name is not None and not isinstance(self.name, str):
            raise ValueError(f"a name pattern is a string, not {type(self.name).__name__}")
        if self.children not in CHILDREN:
            raise ValueError(f"children must be 'reparent' or 'drop', not {self.children!r}")

    @property
    def drops(self) -> bool:
        """Whether the run's children are left out with it."""
        return self.children == DROP

    @classmethod
    def of(cls, rule: Any) -> Ignore:
        """A rule from an :class:`Ignore` or a string (a run type, else a name pattern)."""
        if isinstance(rule, Ignore):
            return rule
        if isinstance(rule, str):
            return cls(type=rule) if rule in RUN_TYPES else cls(name=rule)
        raise ValueError(f"an ignore rule is an Ignore or a string, not {type(rule).__name__}")


class IgnoreRules:
    """A list of :class:`Ignore` rules, compiled once; :meth:`match` is cheap and cached."""

    def __init__(self, rules: Iterable[Ignore | str]) -> None:
        if isinstance(rules, (str, Ignore)):
            rules = [rules]
        elif isinstance(rules, Mapping) or not isinstance(rules, Iterable):
            raise ValueError(f"ignore rules are a list of Ignore or strings, not {type(rules).__name__}")
        self.rules: tuple[Ignore, ...] = tuple(Ignore.of(rule) for rule in rules)
        self._compiled = tuple((rule, _matcher(rule.name)) for rule in self.rules)
        self._cache: dict[tuple[str, str | None], Ignore | None] = {}

    @classmethod
    def of(cls, rules: IgnoreRules | Iterable[Ignore | str] | None) -> IgnoreRules | None:
        """Rules from what a user passes (``None`` or an empty list: no rules)."""
        if rules is None or isinstance(rules, IgnoreRules):
            return rules or None
        compiled = cls(rules)
        return compiled or None

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __repr__(self) -> str:
        return f"IgnoreRules({list(self.rules)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IgnoreRules) and other.rules == self.rules

    def __hash__(self) -> int:
        return hash(self.rules)

    def match(self, run_type: str, name: str | None) -> Ignore | None:
        """The rule that leaves this run out (one that drops its children first), else ``None``.

        ``name`` ``None`` (a run known by type only) matches no name pattern.
        """
        key = (run_type, name)
        cache = self._cache
        if key in cache:
            return cache[key]
        found: Ignore | None = None
        for rule, matches in self._compiled:
            if rule.type is not None and rule.type != run_type:
                continue
            if matches is not None and (name is None or not matches(name)):
                continue
            found = rule
            if rule.drops:
                break
        if len(cache) >= _MAX_CACHED:
            cache.clear()
        cache[key] = found
        return found


def _matcher(pattern: str | None) -> Any:
    """``None`` (any name), equality for a plain name, else the compiled wildcard pattern."""
    if pattern is None:
        return None
    if not _WILDCARDS.search(pattern):
        return pattern.__eq__
    return re.compile(translate(pattern)).match
