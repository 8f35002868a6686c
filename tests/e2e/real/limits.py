"""The real server's rate limit, as the end-to-end tests see it: what lunatrace posted
and was answered, and the limiter's window for this client, read from its headers."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from tests.support.real_lunary import Project, RealLunary


@dataclass(frozen=True)
class Exchange:
    """One ingestion request lunatrace made, and the server's answer."""

    sent_at: float  # time.monotonic()
    answered_at: float
    events: int
    status: int
    headers: Mapping[str, str]
    body: str


def record_posts(monkeypatch: pytest.MonkeyPatch) -> list[Exchange]:
    """Every request lunatrace's HTTP session posts from now on, with its answer, as seen on
    the wire (requests' own ``Session.post``, wrapped; lunatrace's code is left as it is)."""
    exchanges: list[Exchange] = []
    original = requests.Session.post

    def post(session: requests.Session, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        sent_at = time.monotonic()
        response = original(session, url, *args, **kwargs)
        events = len(json.loads(kwargs["data"])["events"])
        headers = CaseInsensitiveDict(response.headers)
        exchanges.append(
            Exchange(sent_at, time.monotonic(), events, response.status_code, headers, response.text)
        )
        return response

    monkeypatch.setattr(requests.Session, "post", post)
    return exchanges


@dataclass(frozen=True)
class Window:
    """The rate limiter's state for this client, as the server's headers tell it."""

    remaining: int  # requests still allowed before it answers 429
    resets_in: float  # seconds until a fresh window


def probe(server: RealLunary, project: Project, limit: int) -> Window:
    """Ask the server (one request: an empty batch) how much of its window is left."""
    answer = requests.post(
        f"{server.url}/v1/runs/ingest",
        json={"events": []},
        headers={"Authorization": f"Bearer {project.key}"},
        timeout=10,
    )
    assert answer.status_code in (200, 429), answer.text
    assert answer.headers["Rate-Limit-Total"] == str(limit)
    remaining = int(answer.headers["Rate-Limit-Remaining"]) if answer.status_code == 200 else 0
    return Window(remaining, float(answer.headers["Rate-Limit-Reset"]) - time.time())


def window_with(
    server: RealLunary, project: Project, limit: int, *, remaining: int, seconds: float
) -> Window:
    """The window after a probe, once it has at least ``remaining`` requests and ``seconds``
    left: a window short of either is waited out (the next request starts a fresh one)."""
    window = probe(server, project, limit)
    if window.remaining < remaining or window.resets_in < seconds:
        time.sleep(window.resets_in + 0.5)
        window = probe(server, project, limit)
    return window
