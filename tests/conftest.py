"""Shared fixtures. Every test runs with a clean lunatrace: no key from the environment,
a store in a temporary directory, and a fresh process-wide tracer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import lunatrace
from lunatrace import api
from lunatrace.core import guard
from lunatrace.core.config import Config
from lunatrace.core.serialize import FieldEncoder
from lunatrace.core.tracer import Tracer
from lunatrace.core.transport import MemorySink
from tests.support.fake_lunary import FakeLunary
from tests.support.real_lunary import Project, RealLunary

_LUNARY_ENV = (
    "LUNARY_PUBLIC_KEY",
    "LUNARY_PRIVATE_KEY",
    "LUNARY_APP_ID",
    "LUNARY_API_URL",
    "LUNARY_VERBOSE",
)


@pytest.fixture(autouse=True)
def _isolated_lunatrace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in _LUNARY_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LUNATRACE_STORE", str(tmp_path / "lunatrace-store" / "events.db"))
    api.shutdown(timeout=5)
    guard.reset()  # each test sees the once-per-place failure warnings afresh
    yield
    api.shutdown(timeout=5)


@pytest.fixture
def memory_sink() -> Iterator[MemorySink]:
    """Install a tracer whose events land, already in wire form, in ``sink.events``."""
    config = Config.resolve()
    encoder = FieldEncoder(config.max_field_bytes, None)
    sink = MemorySink(encoder)
    api._tracer = Tracer(config, sink, encoder)
    yield sink
    api._tracer = None


@pytest.fixture
def lunary_server() -> Iterator[FakeLunary]:
    """A fake Lunary server on 127.0.0.1 (``.url``, ``.key``, ``.events``, fault injection)."""
    server = FakeLunary().start()
    yield server
    server.stop()


# Short timings so fault scenarios finish quickly; production defaults are far longer.
FAST_DELIVERY = {
    "flush_interval": 0.05,
    "retry_timeout": 2.0,
    "http_timeout": 2.0,
    "exit_timeout": 3.0,
}


@pytest.fixture
def traced_to_server(lunary_server: FakeLunary, tmp_path: Path) -> Iterator[FakeLunary]:
    """lunatrace configured to send to ``lunary_server``; call ``lunatrace.flush()`` then
    read ``server.events``."""
    lunatrace.configure(
        project_key=lunary_server.key,
        api_url=lunary_server.url,
        store_path=tmp_path / "spool" / "events.db",
        **FAST_DELIVERY,
    )
    yield lunary_server
    lunatrace.shutdown()


@pytest.fixture(scope="session")
def real_lunary() -> Iterator[RealLunary]:
    """The real Lunary server, started once per session (see tests/support/real_lunary.py)."""
    server = RealLunary("main").start()
    yield server
    server.stop()


@pytest.fixture
def real_project(real_lunary: RealLunary) -> Project:
    """A project of its own on the real server, so that tests never see each other's runs."""
    return real_lunary.new_project()


# Delivery to the real server: short retries, and a read timeout the server's own pace allows.
@pytest.fixture
def events_of(traced_to_server: FakeLunary) -> Callable[[], list[dict[str, Any]]]:
    """Call ``events_of()`` for every event the fake Lunary server received so far (after a
    flush), in the order it got them."""

    def received() -> list[dict[str, Any]]:
        assert lunatrace.flush(10), "flush timed out"
        return list(traced_to_server.events)

    return received


REAL_DELIVERY = {"flush_interval": 0.05, "retry_timeout": 30.0, "exit_timeout": 10.0}


@pytest.fixture
def traced_to_real(real_lunary: RealLunary, real_project: Project, tmp_path: Path) -> Iterator[Project]:
    """lunatrace configured to send to a fresh project of the real server."""
    lunatrace.configure(
        project_key=real_project.key,
        api_url=real_lunary.url,
        store_path=tmp_path / "spool" / "events.db",
        **REAL_DELIVERY,
    )
    yield real_project
    lunatrace.shutdown()


__all__ = ["FAST_DELIVERY", "REAL_DELIVERY", "lunatrace"]
