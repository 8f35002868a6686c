"""Process endings that skip ``atexit``, and how lunatrace still delivers before them.

- ``multiprocessing`` ends a forked ``Process`` with ``os._exit()`` after running its
  own finalizers, and ``Pool`` (and ``ProcessPoolExecutor``) terminate their workers
  with SIGTERM: the exit flush registered with ``atexit`` never runs there. A forked
  child registers the flush as a multiprocessing finalizer (run before ``os._exit``);
  in any multiprocessing child, the end of a root run (or a message or feedback sent
  outside any run) is delivered at once, before the task's result is handed back.
- SIGTERM (``docker stop``, Kubernetes) ends a process without ``atexit`` while its
  handler is the default one. lunatrace then installs a handler that flushes within
  ``exit_timeout`` and ends the process as SIGTERM would have (same exit status). It
  never replaces a handler the application set, is installed only from the main
  thread, never in multiprocessing children (a Python-level handler in a pool worker
  can hang ``Pool.__exit__``), and is taken back in forked children.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

Flush = Callable[[], None]

_checked_pid: int | None = None
_is_child = False
_flush: Flush | None = None


def in_multiprocessing_child() -> bool:
    """Whether this process was started by ``multiprocessing`` (pool workers included)."""
    global _checked_pid, _is_child
    pid = os.getpid()
    if _checked_pid != pid:
        mp = sys.modules.get("multiprocessing")
        _is_child = mp is not None and mp.parent_process() is not None
        _checked_pid = pid
    return _is_child


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    try:
        if _flush is not None:
            _flush()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def install(flush: Flush) -> None:
    """Arrange for ``flush`` to run at the endings that skip ``atexit`` (see the module)."""
    global _flush
    _flush = flush
    if (
        in_multiprocessing_child()
        or threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        return
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or signals unavailable
        pass


class _ForkedChild:
    """What multiprocessing's after-fork registry holds on to (it keeps weak references)."""

    def __call__(self, _: object) -> None:
        from multiprocessing import util

        util.Finalize(None, _flush_if_set, exitpriority=100)


_FORKED_CHILD = _ForkedChild()


def _flush_if_set() -> None:
    if _flush is not None:
        _flush()


def _after_fork_in_child() -> None:
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a pool worker must not inherit it
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        # Run by multiprocessing in a forked Process, after it clears the parent's finalizers.
        util.register_after_fork(_FORKED_CHILD, _FORKED_CHILD)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
