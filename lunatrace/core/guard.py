"""The one place an internal failure of lunatrace is caught, logged and counted.

lunatrace runs inside other people's applications: no exception of its own may reach
their code. Every boundary where lunatrace code is called by the application or a
framework (a callback hook, a decorated function, the worker's loop) goes through this
module instead of a hand-written ``except``:

- :func:`never_raises` decorates a function (a default is returned on failure);
- :class:`swallowed` is a context manager for a block (``with swallowed("flush"):``);
- :func:`failed` is the except-branch itself, for the few hot paths (the LangChain
  hooks) where even a wrapper's call costs too much, written ``except Exception as exc:
  failed(site, exc)``.

A failure is logged as a warning the first time a site fails and at debug level after
(an application calling a broken hook a million times must not get a million warnings),
and counted per site: ``lunatrace.stats()["internal_errors"]``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

logger = logging.getLogger("lunatrace")

P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D")

_counts: dict[str, int] = {}
_lock = threading.Lock()


def failed(site: str, exc: BaseException, effect: str = "tracing continues") -> None:
    """Report that ``site`` failed with ``exc``: logged once per site, always counted.

    ``effect`` says what the failure costs the user (e.g. "the LangChain run is
    unaffected"). Never raises, whatever ``exc``'s ``__str__`` does.
    """
    with _lock:
        first = site not in _counts
        _counts[site] = _counts.get(site, 0) + 1
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails
        text = type(exc).__name__
    if first:
        logger.warning("lunatrace: %s failed (%s); %s", site, text, effect)
    else:
        logger.debug("lunatrace: %s failed again (%s)", site, text, exc_info=exc)


def failures() -> dict[str, int]:
    """How many times each site failed since the process started (or forked)."""
    with _lock:
        return dict(_counts)


class swallowed:
    """A block whose exceptions are reported (:func:`failed`) instead of raised.

    A class rather than ``@contextmanager``: entering it costs a fraction of a generator's
    setup, and it is used on paths that run for every traced call.
    """

    __slots__ = ("effect", "site")

    def __init__(self, site: str, effect: str = "tracing continues") -> None:
        self.site = site
        self.effect = effect

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # KeyboardInterrupt, SystemExit and the like go on
        failed(self.site, exc, self.effect)
        return True


def never_raises(
    site: str, default: D, effect: str = "tracing continues"
) -> Callable[[Callable[P, R]], Callable[P, R | D]]:
    """Decorate a function so that a failure returns ``default`` instead of raising."""

    def decorate(function: Callable[P, R]) -> Callable[P, R | D]:
        @functools.wraps(function)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R | D:
            try:
                return function(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the one guard
                failed(site, exc, effect)
                return default

        return guarded

    return decorate


def reset() -> None:
    """Forget every failure: each site warns again (a forked child starts afresh; tests
    start each case so)."""
    global _lock
    _lock = threading.Lock()
    _counts.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset)
