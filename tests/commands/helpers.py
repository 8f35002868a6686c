"""Shared helpers for the commands' tests."""

from __future__ import annotations

import pytest

from tests.support.fake_lunary import FakeLunary


def point_at(monkeypatch: pytest.MonkeyPatch, server: FakeLunary, key: str | None = None) -> None:
    """The commands' configuration: ``server``'s address, with its key (or ``key``)."""
    monkeypatch.setenv("LUNARY_PUBLIC_KEY", key or server.key)
    monkeypatch.setenv("LUNARY_API_URL", server.url)
