"""Settings from explicit arguments, then the environment, then defaults.

Lunary's own variable names (``LUNARY_*``) are honoured so an app that already uses the
official SDK needs no new configuration; everything lunatrace-specific is ``LUNATRACE_*``.
Every value is validated once, here, so a bad setting fails with one message naming it
instead of surfacing later as an obscure transport error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from lunatrace.core.ignore import IgnoreRules
from lunatrace.core.serialize import scrub_text

logger = logging.getLogger("lunatrace")
N = TypeVar("N", int, float)

DEFAULT_API_URL = "https://api.lunary.ai"


class ConfigError(ValueError):
    """A setting has a value lunatrace cannot use; the message names the setting.

    ``setting`` is the setting's name (``None`` for an unknown setting name), so callers
    can drop just that value and keep the rest of the configuration.
    """

    def __init__(self, message: str, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


def mask_key(key: str | None) -> str:
    """Show just enough of a key to tell two keys apart, never the whole key."""
    if not key:
        return "<none>"
    if len(key) <= 8:
        return "****"
    return f"{key[:4]}…{key[-4:]}"


def redact(text: str, key: str | None = None) -> str:
    """``text`` as lunatrace may print it: in a log line, ``lunatrace doctor``'s report, a repr.

    What lunatrace prints can hold credentials it did not write: a server's error body may
    echo the request's ``Authorization`` header, an ``api_url`` may carry
    ``user:password@``. The project ``key`` is shown as :func:`mask_key` shows it, and
    whatever :func:`~lunatrace.core.serialize.scrub_text` removes from events (URL
    passwords, bearer and basic credentials, provider keys) is replaced.
    """
    if key and key in text:
        text = text.replace(key, mask_key(key))
    return scrub_text(text)


MaskHook = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class Config:
    """The effective settings of one lunatrace process. Build it with :meth:`resolve`."""

    project_key: str | None = None
    api_url: str = DEFAULT_API_URL
    verbose: bool = False
    enabled: bool = True
    store_path: Path = dataclasses.field(default_factory=lambda: Path.home() / ".lunatrace" / "events.db")
    queue_size: int = 100_000
    queue_max_bytes: int = 100_000_000
    batch_max_events: int = 500
    batch_max_bytes: int = 2_000_000
    flush_interval: float = 0.5
    max_field_bytes: int = 64_000
    sample_rate: float = 1.0
    retry_timeout: float = 60.0
    http_timeout: float = 10.0
    exit_timeout: float = 5.0
    mask: MaskHook | None = None
    ignore: IgnoreRules | None = None

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={self.shown(f.name)!r}" for f in dataclasses.fields(self))
        return f"Config({fields})"

    def shown(self, name: str) -> Any:
        """Setting ``name`` as it may be printed: the key masked, credentials out of the URL."""
        value = getattr(self, name)
        if name == "project_key":
            return mask_key(value)
        return redact(value, self.project_key) if name == "api_url" else value

    __str__ = __repr__

    @property
    def ingest_url(self) -> str:
        """The exact ingestion endpoint: no trailing slash, which the server would refuse."""
        return self.api_url.rstrip("/") + "/v1/runs/ingest"

    @property
    def uses_server(self) -> bool:
        """Events go to a Lunary server only when a project key is configured."""
        return bool(self.project_key)

    @classmethod
    def resolve_for(cls, needed: Collection[str], env: Mapping[str, str] | None = None) -> Config:
        """The settings from the environment for a task that uses only ``needed`` (a
        command of the CLI): a bad variable of another setting is reported (a warning)
        and left out, so that a mistake elsewhere never stops it; a bad one it needs
        raises :class:`ConfigError`."""
        environ = dict(os.environ if env is None else env)
        while True:
            try:
                return cls.resolve(env=environ)
            except ConfigError as exc:
                names = ENVIRONMENT_VARIABLES.get(exc.setting or "", ())
                if exc.setting in needed or not any(environ.pop(name, None) is not None for name in names):
                    raise
                logger.warning("lunatrace: %s; left out for this command", exc)

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Combine explicit ``overrides`` (non-``None`` values win) with ``env`` and defaults.

        Raises :class:`ConfigError` naming the first invalid setting.
        """
        environ = os.environ if env is None else env
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, (env_names, parse) in _ENV_SETTINGS.items():
            explicit = overrides.get(name)
            if explicit is not None:
                values[name] = _checked(name, explicit, parse, f"argument {name!r}")
                continue
            for env_name in env_names:
                raw = environ.get(env_name)
                if raw not in (None, ""):
                    values[name] = _checked(name, raw, parse, env_name)
                    break
        if overrides.get("mask") is not None:
            if not callable(overrides["mask"]):
                raise ConfigError("setting 'mask' must be a callable mask(value) -> value", "mask")
            values["mask"] = overrides["mask"]
        if overrides.get("ignore") is not None:
            try:
                values["ignore"] = IgnoreRules.of(overrides["ignore"])
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"invalid value for setting 'ignore': {exc}", "ignore") from None
        return cls(**values)


def _checked(name: str, raw: Any, parse: Callable[[Any], Any], source: str) -> Any:
    try:
        return parse(raw)
    except (TypeError, ValueError) as exc:
        shown = mask_key(str(raw)) if name == "project_key" else redact(repr(raw))
        raise ConfigError(f"invalid value {shown} for {source}: {exc}", name) from None


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected a boolean (true/false, 1/0, yes/no, on/off)")


def _parse_url(raw: Any) -> str:
    text = str(raw).strip()
    parsed = urlparse(text)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise ValueError("expected an http(s) URL such as https://api.lunary.ai")
    return text.rstrip("/")


def _parse_key(raw: Any) -> str:
    text = str(raw).strip()
    if not text or any(c.isspace() for c in text):
        raise ValueError("a project key is one word with no spaces")
    return text


def _positive_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("expected a positive integer")
    value = _number(raw, int, "a positive integer")
    if value <= 0:
        raise ValueError("expected a positive integer")
    return value


def _number(raw: Any, kind: Callable[[Any], N], expected: str) -> N:
    """``kind(raw)``, or a ``ValueError`` saying what was expected (not Python's message)."""
    try:
        return kind(raw)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"expected {expected}") from None


MIN_FIELD_BYTES = 256


def _field_size(raw: Any) -> int:
    value = _positive_int(raw)
    if value < MIN_FIELD_BYTES:
        raise ValueError(f"expected at least {MIN_FIELD_BYTES} bytes (room for the truncation marker)")
    return value


def _positive_float(raw: Any) -> float:
    value = _number(raw, float, "a positive number of seconds")
    if not value > 0 or value == float("inf"):
        raise ValueError("expected a positive number of seconds")
    return value


def _rate(raw: Any) -> float:
    value = _number(raw, float, "a fraction between 0 and 1")
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a fraction between 0 and 1")
    return value


def _path(raw: Any) -> Path:
    text = str(raw).strip()
    if not text:
        raise ValueError("expected a file path")
    return Path(text).expanduser()


# setting -> (environment names in priority order, parser)
_ENV_SETTINGS: dict[str, tuple[tuple[str, ...], Callable[[Any], Any]]] = {
    "project_key": (("LUNARY_PRIVATE_KEY", "LUNARY_PUBLIC_KEY", "LUNARY_APP_ID"), _parse_key),
    "api_url": (("LUNARY_API_URL",), _parse_url),
    "verbose": (("LUNARY_VERBOSE", "LUNATRACE_VERBOSE"), _parse_bool),
    "enabled": (("LUNATRACE_ENABLED",), _parse_bool),
    "store_path": (("LUNATRACE_STORE",), _path),
    "queue_size": (("LUNATRACE_QUEUE_SIZE",), _positive_int),
    "queue_max_bytes": (("LUNATRACE_QUEUE_MAX_BYTES",), _positive_int),
    "batch_max_events": (("LUNATRACE_BATCH_MAX_EVENTS",), _positive_int),
    "batch_max_bytes": (("LUNATRACE_BATCH_MAX_BYTES",), _positive_int),
    "flush_interval": (("LUNATRACE_FLUSH_INTERVAL",), _positive_float),
    "max_field_bytes": (("LUNATRACE_MAX_FIELD_BYTES",), _field_size),
    "sample_rate": (("LUNATRACE_SAMPLE_RATE",), _rate),
    "retry_timeout": (("LUNATRACE_RETRY_TIMEOUT",), _positive_float),
    "http_timeout": (("LUNATRACE_HTTP_TIMEOUT",), _positive_float),
    "exit_timeout": (("LUNATRACE_EXIT_TIMEOUT",), _positive_float),
}

ENVIRONMENT_VARIABLES: dict[str, tuple[str, ...]] = {
    name: names for name, (names, _) in _ENV_SETTINGS.items()
}
