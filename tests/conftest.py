"""Shared fixtures. Every test runs with a clean lunatrace: no key from the environment,
a store in a temporary directory, and a fresh process-wide tracer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import lunatrace
from lunatrace import api
from lunatrace.core.config import Config
from lunatrace.core.serialize import FieldEncoder
from lunatrace.core.tracer import Tracer
from lunatrace.core.transport import MemorySink

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


__all__ = ["lunatrace"]
