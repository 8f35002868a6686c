"""One ingestion request to a Lunary server, and what its answer means for delivery.

This module knows the server's status codes (see the protocol notes) and nothing about
batching or retrying: it turns every possible outcome — connection error, timeout,
status, malformed body — into an :class:`Answer` whose ``kind`` the sender acts on.
"""

from __future__ import annotations

import email.utils
import enum
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.auth

from lunatrace._version import __version__
from lunatrace.core.config import Config, mask_key, redact
from lunatrace.core.json_text import loads
from lunatrace.core.transport.pacing import Budget, read_budget

USER_AGENT = f"lunatrace-py/{__version__}"
DUPLICATE_START = "Run with this ID already exists in the database."
EMPTY_BATCH = b'{"events":[]}'
MESSAGE_CHARS = 300  # of an error answer's message, kept to be printed


class Kind(enum.Enum):
    OK = "ok"  # 200 with per-event results
    RETRY = "retry"  # worth trying again later: network, 408, 429, 5xx, malformed answer
    TOO_LARGE = "too_large"  # 413: split the batch
    CONFIG = "config"  # 3xx/401/402/403/404: the key or URL is wrong; retrying cannot help
    REFUSED = "refused"  # another 4xx: the server will never take this body


@dataclass
class Answer:
    kind: Kind
    status: int | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    retry_after: float | None = None
    detail: str = ""
    budget: Budget | None = None  # the server's rate limit, when the answer says it


def encode_batch(bodies: list[str]) -> bytes:
    """The request body for already-encoded events: ``{"events":[...]}``."""
    return ('{"events":[' + ",".join(bodies) + "]}").encode()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Bearer(requests.auth.AuthBase):
    """The project key as ``Authorization: Bearer``, whatever else the URL carries."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __repr__(self) -> str:
        return f"_Bearer({mask_key(self._key)!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._key}"
        return request


class IngestClient:
    """Posts batches to ``config.ingest_url`` over one keep-alive session."""

    def __init__(self, config: Config) -> None:
        self.url = config.ingest_url
        self.timeout = config.http_timeout
        self._key = config.project_key or ""
        self._session = self._new_session()

    def __repr__(self) -> str:
        return f"IngestClient(url={redact(self.url, self._key)!r}, key={mask_key(self._key)!r})"

    def _new_session(self) -> requests.Session:
        """A session with the environment's settings for ``self.url`` resolved once.

        With ``trust_env`` on, requests reads the environment again on every request:
        proxies (``HTTPS_PROXY``, ``NO_PROXY``: a walk over ``os.environ``), the CA bundle
        (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) and ``~/.netrc``. The URL never
        changes, so the proxies and CA bundle are resolved here and set on the session,
        and the environment is not read again. ``~/.netrc`` is no longer consulted: its
        credentials for the host would replace the project key's ``Authorization``. For the
        same reason the key is the session's ``auth``: requests would otherwise turn a
        ``user:password@`` in ``api_url`` into Basic credentials sent instead of the key.
        """
        session = requests.Session()
        settings = session.merge_environment_settings(self.url, {}, None, None, None)
        session.trust_env = False
        session.proxies = settings["proxies"]
        session.verify = settings["verify"]
        session.cert = settings["cert"]
        session.auth = _Bearer(self._key)
        session.headers.update({"Content-Type": "application/json", "User-Agent": USER_AGENT})
        return session

    def reset(self) -> None:
        """A fresh session (after ``fork``: the parent's sockets must not be shared), with
        the environment resolved again."""
        self._session = self._new_session()

    def close(self) -> None:
        self._session.close()

    def post(self, body: bytes, *, connect: float | None = None, read: float | None = None) -> Answer:
        """Send one request; never raises.

        ``connect`` bounds reaching the server, ``read`` waiting for its answer (both
        default to ``http_timeout``). The server answers only after writing every event,
        so the sender sets ``read`` from what the batch will cost it.
        """
        connect_s = self.timeout if connect is None else max(0.05, min(self.timeout, connect))
        read_s = self.timeout if read is None else max(0.05, read)
        try:
            # Never follow a redirect: requests would re-send a 301/302 as a GET (the events
            # lost, the answer a success page) and a 307 to another origin with the key.
            response = self._session.post(
                self.url, data=body, timeout=(connect_s, read_s), allow_redirects=False
            )
        except Exception as exc:  # noqa: BLE001 - not a report: any failure to get an answer is a retry
            return Answer(Kind.RETRY, detail=no_answer(exc, self.url, (connect_s, read_s)))
        return classify(response)


def no_answer(exc: BaseException, url: str, timeouts: tuple[float, float]) -> str:
    """Why a request got no answer, in a user's words (``requests`` nests the cause several
    exceptions deep, with the pool's internals around it)."""
    parts = urlsplit(url)  # never its netloc: it may hold a user:password
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no connection to {host} within {timeouts[0]:g} s"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"{host} did not answer within {timeouts[1]:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"the TLS handshake with {host} failed (certificate or protocol)"
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        if "Name or service not known" in text or "NameResolution" in text or "getaddrinfo" in text:
            return f"the host name in {host} cannot be resolved"
        if "refused" in text.lower():
            return f"{host} refused the connection (is the server running on that port?)"
        if "reset" in text.lower() or "aborted" in text.lower():
            return f"{host} closed the connection"
        return f"cannot connect to {host}"
    return f"{type(exc).__name__}: {exc}"


def classify(response: requests.Response) -> Answer:
    """What an answer means for delivery, with the rate-limit budget it gives."""
    answer = _classify(response)
    answer.budget = read_budget(response.headers, time.time(), time.monotonic())
    return answer


def _classify(response: requests.Response) -> Answer:
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("Location") or "an unnamed location"
        return Answer(Kind.CONFIG, status, detail=f"the server redirects to {location}")
    if 200 <= status < 300:
        try:
            payload = loads(response.content)  # the server's results, one per event: parsed in C
        except ValueError:
            return Answer(Kind.RETRY, status, detail="the answer is not JSON")
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            return Answer(Kind.RETRY, status, detail="the answer has no results list")
        return Answer(Kind.OK, status, results)
    detail = _message(response)
    if status in (408, 429) or status >= 500:
        return Answer(
            Kind.RETRY,
            status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            detail=detail,
        )
    if status == 413:
        return Answer(Kind.TOO_LARGE, status, detail=detail)
    if status in (401, 402, 403, 404):
        return Answer(Kind.CONFIG, status, detail=detail)
    return Answer(Kind.REFUSED, status, detail=detail)


def _message(response: requests.Response) -> str:
    """What an error answer says: its JSON ``message``, else its text, cut to
    :data:`MESSAGE_CHARS`. The whole body is parsed (a long JSON error cut first would not
    parse); only the message it yields is cut."""
    text = response.text
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        text = payload["message"]
    # An error body can echo the request, its Authorization header included: the credential
    # sent is masked, and others scrubbed, before any of it is kept to be printed (with
    # room to spare: a credential across the cut would not be recognised).
    sent = response.request.headers.get("Authorization", "") if response.request is not None else ""
    return redact(text.strip()[:2_000], str(sent).partition(" ")[2])[:MESSAGE_CHARS].strip()
