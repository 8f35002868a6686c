"""Per-task tracing context on ``contextvars``: the current run, user, tags and metadata.

``contextvars`` follow asyncio tasks and ``contextvars.copy_context`` (which LangChain
and LlamaIndex use for their thread pools), so concurrent requests never see each
other's runs, unlike a process-wide stack. Every setter is a context manager that
restores the previous value on exit, also when the body raises.

Frameworks keep their own notion of "the run in progress" (LangChain's child config,
LlamaIndex's active span). Integrations register a *framework run resolver* so that a
decorated function called inside a framework run nests under it; core never imports a
framework to do so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lunatrace.core.guard import failed


@dataclass(frozen=True)
class RunFrame:
    """One lunatrace run on the context stack.

    ``framework_runs`` records what each framework resolver reported when this frame was
    pushed; a different answer later means a framework run started inside this frame.
    """

    run_id: str
    parent: RunFrame | None
    framework_runs: tuple[str | None, ...]


@dataclass(frozen=True)
class User:
    user_id: str
    props: Mapping[str, Any] | None = None


_current_run: ContextVar[RunFrame | None] = ContextVar("lunatrace_run", default=None)
_user: ContextVar[User | None] = ContextVar("lunatrace_user", default=None)
_tags: ContextVar[tuple[str, ...]] = ContextVar("lunatrace_tags", default=())
_metadata: ContextVar[Mapping[str, Any]] = ContextVar("lunatrace_metadata", default=MappingProxyType({}))

FrameworkResolver = Callable[[], "str | None"]
_resolvers: list[FrameworkResolver] = []


def register_framework_resolver(resolver: FrameworkResolver) -> None:
    """Let core ask a framework which of its runs (already traced by us) is in progress."""
    if resolver not in _resolvers:
        _resolvers.append(resolver)


def _framework_runs() -> tuple[str | None, ...]:
    results: list[str | None] = []
    for resolver in _resolvers:
        try:
            results.append(resolver())
        except Exception as exc:  # noqa: BLE001 - the guard's hot-path form: this runs for every run
            name = getattr(resolver, "__qualname__", resolver)
            failed(f"run resolver {name}", exc, "runs nest as if that framework had no run open")
            results.append(None)
    return tuple(results)


def current_run_id() -> str | None:
    """The innermost traced run in this context: a lunatrace run or a framework run."""
    frame = _current_run.get()
    framework = _framework_runs()
    if frame is None:
        return next((run for run in framework if run), None)
    for now, then in zip(framework, frame.framework_runs, strict=False):
        if now and now != then:
            return now  # a framework run started inside the lunatrace frame
    return frame.run_id


# The innermost lunatrace frame, with the framework runs seen when it was pushed. An
# integration uses it to tell that a decorated function sits *inside* the framework run
# a new framework run names as its parent, so the new run nests under the function.
# The context variables' own ``get`` (no Python frame): this is read on every event.
current_frame: Callable[[], RunFrame | None] = _current_run.get


def current_lunatrace_run_id() -> str | None:
    """The innermost run opened by lunatrace itself (decorator, thread message)."""
    frame = _current_run.get()
    return frame.run_id if frame else None


@contextlib.contextmanager
def run_scope(run_id: str) -> Iterator[RunFrame]:
    """Make ``run_id`` the current run for the body."""
    frame = RunFrame(run_id, _current_run.get(), _framework_runs())
    token = _current_run.set(frame)
    try:
        yield frame
    finally:
        _current_run.reset(token)


def push_run(run_id: str) -> Any:
    """Non-``with`` form of :func:`run_scope` for generators; pair with :func:`pop_run`."""
    return _current_run.set(RunFrame(run_id, _current_run.get(), _framework_runs()))


def pop_run(token: Any) -> None:
    try:
        _current_run.reset(token)
    except ValueError:  # reset from another context (a generator resumed elsewhere)
        pass


current_user: Callable[[], User | None] = _user.get
current_tags: Callable[[], tuple[str, ...]] = _tags.get
current_metadata: Callable[[], Mapping[str, Any]] = _metadata.get


@contextlib.contextmanager
def identify(user_id: Any, user_props: Mapping[str, Any] | None = None) -> Iterator[User]:
    """Attribute every run started in the body to ``user_id`` (sent as a string)."""
    user = User(str(user_id), dict(user_props) if user_props else None)
    token = _user.set(user)
    try:
        yield user
    finally:
        _user.reset(token)


@contextlib.contextmanager
def tags(values: Sequence[str] | str) -> Iterator[tuple[str, ...]]:
    """Add tags to every run started in the body (on top of enclosing ``tags``)."""
    new = (values,) if isinstance(values, str) else tuple(str(v) for v in values)
    combined = tuple(dict.fromkeys(_tags.get() + new))
    token = _tags.set(combined)
    try:
        yield combined
    finally:
        _tags.reset(token)


@contextlib.contextmanager
def metadata(values: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Merge ``values`` into the metadata of every run started in the body."""
    combined = {**_metadata.get(), **dict(values)}
    token = _metadata.set(combined)
    try:
        yield combined
    finally:
        _metadata.reset(token)
