"""The process-wide tracer behind the public functions, and those functions.

The tracer is created lazily from the environment on first use, so ``import lunatrace``
costs nothing and an app that never calls :func:`configure` still gets traces (to the
local store, or to Lunary when ``LUNARY_PUBLIC_KEY``/``LUNARY_PRIVATE_KEY`` is set).
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import importlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from lunatrace.core import context, guard, processes
from lunatrace.core.config import ENVIRONMENT_VARIABLES, Config, ConfigError
from lunatrace.core.events import new_run_id
from lunatrace.core.serialize import FieldEncoder
from lunatrace.core.tracer import Tracer
from lunatrace.core.transport import make_sink

logger = logging.getLogger("lunatrace")

_tracer: Tracer | None = None
_lock = threading.Lock()
_atexit_registered = False
# Other projects this process sends to (``project()``, a handler's ``project_key``): a
# tracer each, with a worker and a spool of its own, so that each keeps one request in
# flight and nothing spooled for one is ever sent to another.
_projects: dict[tuple[str, str | None], Tracer] = {}  # by route, and by the arguments as given
_routed: ContextVar[Tracer | None] = ContextVar("lunatrace_project", default=None)
_ever_routed = False  # no ``project()`` block yet: ``get_tracer`` skips the lookup


def _new_tracer(config: Config) -> Tracer:
    if config.verbose and not logger.handlers:
        logging.basicConfig()
        logger.setLevel(logging.DEBUG)
    encoder = FieldEncoder(config.max_field_bytes, config.mask, secrets=(config.project_key or "",))
    return Tracer(config, make_sink(config, encoder), encoder)


def get_tracer() -> Tracer:
    """The process's tracer, created from the environment on first use; inside a
    :func:`project` block, that project's."""
    if _ever_routed:
        routed = _routed.get()
        if routed is not None:
            return routed
    tracer = _tracer
    return tracer if tracer is not None else _process_tracer()


def _process_tracer() -> Tracer:
    """The process's own tracer, whatever :func:`project` block is active."""
    global _tracer, _atexit_registered
    tracer = _tracer
    if tracer is not None:
        return tracer
    with _lock:
        if _tracer is None:
            _tracer = _new_tracer(_config_from_environment())
            if not _atexit_registered:
                _register_exit_flush()
                _atexit_registered = True
        return _tracer


def _config_from_environment() -> Config:
    """Settings from the environment; a bad variable is logged and only it is ignored.

    Tracing must not stop an app from starting, and one mistyped variable must not
    silently drop the others (the project key above all). A bad server URL is the
    exception: its default is Lunary's cloud, and a self-hosted user's prompts and key
    must never go there by mistake, so nothing is sent anywhere and events are kept in
    the local store instead.
    """
    env = dict(os.environ)
    while True:
        try:
            config = Config.resolve(env=env)
        except ConfigError as exc:
            names = ENVIRONMENT_VARIABLES.get(exc.setting or "", ())
            if exc.setting == "api_url":
                for name in (*names, *ENVIRONMENT_VARIABLES["project_key"]):
                    env.pop(name, None)
                logger.error(
                    "lunatrace: %s; NOTHING IS SENT to any server until it is fixed: events are kept in "
                    "the local store (upload them with `lunatrace push` once LUNARY_API_URL is right)",
                    exc,
                )
                continue
            logger.error("lunatrace: %s; using the default for that setting", exc)
            if not any(env.pop(name, None) is not None for name in names):
                return Config.resolve(env={})
            continue
        return config


def configure(**settings: Any) -> Config:
    """Set lunatrace's settings (see docs/configuration.md) and return the effective ones.

    Explicit values win over the environment. Raises :class:`ConfigError` naming the
    first invalid setting; the previous configuration then stays in force. Events
    emitted under the previous configuration are flushed (within its ``exit_timeout``)
    before the switch, and what is not delivered by then is kept by its shutdown (the
    spool); runs still open then end under the new one, which continues their registry.
    """
    global _tracer, _atexit_registered
    config = Config.resolve(**settings)
    with _lock:
        tracer = _new_tracer(config)
        if _tracer is not None:
            _tracer.flush(_tracer.config.exit_timeout)  # its starts go before the new ends
            tracer.take_open_runs(_tracer)
        previous, _tracer = _tracer, tracer
        if not _atexit_registered:
            _register_exit_flush()
            _atexit_registered = True
        others = [each for each in _all_tracers() if each is not tracer and each is not previous]
        _projects.clear()  # made again on first use, with the new settings
    for each in [*others, *([previous] if previous is not None else [])]:
        each.shutdown(each.config.exit_timeout)
    return config


def tracer_for(project_key: str, api_url: str | None = None) -> Tracer:
    """The tracer that sends to ``project_key`` (at ``api_url``, else the configured
    server), made on first use with the process's other settings.

    Its spool is a store of its own beside the configured one (``projects/<id>/``, named
    by a digest of the key and URL, never the key): what is kept for one project is
    re-sent to that project only. Raises :class:`ConfigError` for a key or URL that is
    not valid, so that a mistyped setting never sends data to the wrong place.
    """
    tracer = _projects.get((project_key, api_url))  # the common case: asked before, as is
    if tracer is not None:
        return tracer
    base = _process_tracer().config
    checked = Config.resolve(env={}, project_key=project_key, api_url=api_url or base.api_url)
    route = (str(checked.project_key), checked.api_url)
    if route == (base.project_key, base.api_url):
        return _process_tracer()
    with _lock:
        tracer = _projects.get(route)
        if tracer is None:
            digest = hashlib.sha256("\n".join(route).encode()).hexdigest()[:16]
            store = base.store_path.parent / "projects" / digest / base.store_path.name
            config = dataclasses.replace(base, project_key=route[0], api_url=route[1], store_path=store)
            tracer = _projects[route] = _new_tracer(config)
        _projects[(project_key, api_url)] = tracer
        return tracer


@contextmanager
def project(project_key: str, api_url: str | None = None) -> Iterator[Tracer]:
    """Send every run started in the body to another Lunary project (any integration:
    ``@trace``, LangChain, LlamaIndex), at ``api_url`` or the configured server.

    The runs of one trace stay in one project: start the block around the whole work.
    Raises :class:`ConfigError` for an invalid key or URL.
    """
    global _ever_routed
    tracer = tracer_for(project_key, api_url)
    _ever_routed = True
    token = _routed.set(tracer)
    try:
        yield tracer
    finally:
        _routed.reset(token)


def _all_tracers() -> list[Tracer]:
    tracers = list({id(tracer): tracer for tracer in _projects.values()}.values())  # once each
    return [_tracer, *tracers] if _tracer is not None else tracers


def flush(timeout: float | None = 10.0) -> bool:
    """Block until every event emitted so far is delivered (or stored), for every project
    this process sends to; ``True`` if done."""
    default = _process_tracer()
    others = [tracer for tracer in _all_tracers() if tracer is not default]
    return all([default.flush(timeout), *(tracer.flush(timeout) for tracer in others)])


def shutdown(timeout: float | None = None) -> bool:
    """Flush within ``timeout`` (default: the exit timeout) and stop the background
    workers (the other projects' too)."""
    global _tracer
    with _lock:
        tracer, _tracer = _tracer, None
        others = [each for each in _all_tracers() if each is not tracer]
        _projects.clear()
    done = True
    for each in [*others, *([tracer] if tracer is not None else [])]:
        done = each.shutdown(each.config.exit_timeout if timeout is None else timeout) and done
    return done


def stats() -> dict[str, int]:
    """Event counts of the current sink (queued, sent, retried, spooled, stored, dropped,
    failed: see docs/delivery.md), and ``internal_errors``: how many times lunatrace's own
    code failed and was caught (each failing place is logged once; ``guard.failures()``
    names them)."""
    sink_stats = getattr(get_tracer().sink, "stats", None)
    counts = dict(sink_stats()) if callable(sink_stats) else {}
    counts["internal_errors"] = sum(guard.failures().values())
    return counts


def _register_exit_flush() -> None:
    """Flush at interpreter exit, and at the endings that skip ``atexit`` (SIGTERM with
    its default handler, multiprocessing children): see ``core.processes``."""
    atexit.register(_flush_at_exit)
    processes.install(_flush_at_exit)


def _flush_at_exit() -> None:
    for tracer in _all_tracers():
        tracer.shutdown(tracer.config.exit_timeout)


def feedback(
    run_id: Any,
    thumb: str | None = None,
    comment: str | None = None,
    rating: float | None = None,
    emoji: str | None = None,
    **extra: Any,
) -> bool:
    """Send user feedback for a run (``thumb`` is ``"up"`` or ``"down"``)."""
    return get_tracer().feedback(
        run_id, thumb=thumb, comment=comment, rating=rating, emoji=emoji, extra=extra or None
    )


def current_run_id() -> str | None:
    """The id of the innermost traced run in this context, or ``None``."""
    return context.current_run_id()


@contextmanager
def parent(run_id: Any) -> Iterator[str]:
    """Nest every run started in the body under ``run_id`` (e.g. a thread message id).

    The id may come from another process (a message tracked by an earlier request), and
    may be any non-empty string, as on the server. Yields the id the server keeps for it
    (a message id the server has since merged into a later message is followed).
    """
    adopted = get_tracer().adopt(run_id)
    with context.run_scope(adopted if adopted is not None else str(run_id)) as frame:
        yield frame.run_id


class Thread:
    """A conversation: messages tracked on it show as one thread in Lunary."""

    def __init__(
        self,
        thread_id: str | None = None,
        tags: Sequence[str] | None = None,
        user_id: Any = None,
        user_props: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = str(thread_id) if thread_id is not None else new_run_id()
        self.tags = list(tags) if tags else None
        self.user_id = None if user_id is None else str(user_id)
        self.user_props = dict(user_props) if user_props else None

    def __repr__(self) -> str:
        return f"Thread(id={self.id!r}, tags={self.tags!r}, user_id={self.user_id!r})"

    def track_message(
        self,
        role: str,
        content: Any,
        *,
        message_id: Any = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
    ) -> str:
        """Record a message (``user``/``system`` are inputs, ``assistant``/``tool`` outputs).

        Returns the message id: pass it to :func:`parent` to nest the work it triggers.
        """
        return get_tracer().track_message(
            self.id,
            role,
            content,
            message_id=message_id,
            thread_tags=self.tags,
            user_id=self.user_id,
            user_props=self.user_props,
            metadata=metadata,
            tags=tags,
        )


def open_thread(
    thread_id: str | None = None,
    tags: Sequence[str] | None = None,
    user_id: Any = None,
    user_props: Mapping[str, Any] | None = None,
) -> Thread:
    """Open (or continue, given its id) a conversation thread."""
    return Thread(thread_id, tags, user_id, user_props)


Client = TypeVar("Client")
# The top-level module of a client's class -> the integration that monitors it.
PROVIDER_INTEGRATIONS = {
    "openai": "lunatrace.integrations.openai",
    "anthropic": "lunatrace.integrations.anthropic",
}


def _provider_integration(client: Any) -> Any:
    module = type(client).__module__.partition(".")[0]
    name = PROVIDER_INTEGRATIONS.get(module)
    if name is None:
        raise TypeError(
            f"lunatrace.monitor() takes a provider client (OpenAI, AsyncOpenAI, AzureOpenAI, "
            f"AsyncAzureOpenAI, Anthropic, AsyncAnthropic), not {type(client).__qualname__}"
        )
    return importlib.import_module(name)


def monitor(client: Client) -> Client:
    """Trace every call of this provider client (an ``openai`` or ``anthropic`` client
    instance) as a run, in place, and return the same client (see docs/openai.md).

    Monitoring twice is the same as once; :func:`unmonitor` undoes it. The client keeps
    its type and its methods' signatures. Raises ``TypeError`` (when called, never
    inside a call) for an object that is not a supported client.
    """
    _provider_integration(client).monitor(client)
    return client


def unmonitor(client: Client) -> Client:
    """Stop tracing a client :func:`monitor` traced (a client never monitored is left
    as it is) and return it."""
    _provider_integration(client).unmonitor(client)
    return client
