"""Nothing lunatrace prints shows the project key or the credentials of ``api_url``.

The server here is a real HTTP server on 127.0.0.1 that refuses every request with a body
echoing the request's ``Authorization`` header, as some servers and proxies do: the key
lunatrace sent comes back in the answer lunatrace reports.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import lunatrace
from lunatrace.cli import main
from lunatrace.core.config import Config, ConfigError, mask_key, redact
from tests.core.secret_shapes import PROJECT_KEY

PASSWORD = "pw-7f3a9c2e1b"
BASIC = base64.b64encode(f"proxyuser:{PASSWORD}".encode()).decode()  # what requests sends for it
FAST = {"flush_interval": 0.05, "retry_timeout": 1.0, "http_timeout": 2.0, "exit_timeout": 3.0}


class EchoingServer:
    """Answers every POST with ``status`` and a body that repeats the request's header."""

    def __init__(self, status: int, body: str) -> None:
        self.status, self.body = status, body
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests += 1
                sent = self.headers.get("Authorization", "")
                text = server.body.format(header=sent, credential=sent.partition(" ")[2]).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials}127.0.0.1:{self.port}"

    def __enter__(self) -> EchoingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()


# An echo as JSON with a message, as plain text, and as a JSON body without one.
BODIES = [
    '{{"message": "invalid key; you sent Authorization: {header}"}}',
    "refused: Authorization: {header}\nkey={credential}",
    '{{"error": "unauthorized", "request": {{"headers": {{"authorization": "{header}"}}}}}}',
]


@pytest.fixture(params=BODIES, ids=["json-message", "text", "json-echo"])
def body(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def echo_as_shown(body: str) -> str:
    """The first line of what the server said, its echo of the key masked: what a report
    must still show of the refusal (it would leak nothing if it left the echo out)."""
    masked = mask_key(PROJECT_KEY)
    said = body.format(header=f"Bearer {masked}", credential=masked)
    if said.startswith("{"):
        said = json.loads(said).get("message", said)
    return said.splitlines()[0]


def assert_no_credential(text: str) -> None:
    for secret in (PROJECT_KEY, PASSWORD, BASIC):
        assert secret not in text


@pytest.mark.parametrize("status", [401, 500])
def test_a_server_echoing_the_key_does_not_make_it_logged(
    status: int, body: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EchoingServer(status, body) as server, caplog.at_level(logging.DEBUG, logger="lunatrace"):
        lunatrace.configure(
            project_key=PROJECT_KEY, api_url=server.url(), store_path=tmp_path / "s.db", **FAST
        )
        lunatrace.get_tracer().start_run("chain", "echoed", None)
        lunatrace.flush(timeout=10)
        lunatrace.shutdown()
    assert server.requests >= 1
    assert f"HTTP {status}: {echo_as_shown(body)}" in caplog.text  # the refusal, its echo masked
    assert_no_credential(caplog.text)


def test_credentials_in_the_api_url_are_never_printed(
    body: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EchoingServer(401, body) as server, caplog.at_level(logging.DEBUG, logger="lunatrace"):
        url = server.url(f"proxyuser:{PASSWORD}@")
        config = lunatrace.configure(
            project_key=PROJECT_KEY, api_url=url, store_path=tmp_path / "s.db", **FAST
        )
        lunatrace.get_tracer().start_run("chain", "echoed", None)
        lunatrace.flush(timeout=10)
        lunatrace.shutdown()
    assert server.requests >= 1 and f"HTTP 401: {echo_as_shown(body)}" in caplog.text
    assert_no_credential(caplog.text + repr(config) + str(config))
    assert "proxyuser" in repr(config)  # the user name says which account; only the password goes


@pytest.mark.parametrize("status", [401, 500])
def test_doctor_shows_neither_the_key_nor_the_url_password(
    status: int, body: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with EchoingServer(status, body) as server:
        monkeypatch.setenv("LUNARY_PUBLIC_KEY", PROJECT_KEY)
        for url in (server.url(), server.url(f"proxyuser:{PASSWORD}@")):
            monkeypatch.setenv("LUNARY_API_URL", url)
            assert main(["doctor"]) == 1
            printed = capsys.readouterr()
            assert f"HTTP {status}: {echo_as_shown(body)}" in printed.err
            assert_no_credential(printed.out + printed.err)


def test_a_refused_url_is_named_without_its_password() -> None:
    with pytest.raises(ConfigError) as refused:
        Config.resolve({"LUNARY_API_URL": f"ftp://proxyuser:{PASSWORD}@host.example"})
    assert "LUNARY_API_URL" in str(refused.value) and PASSWORD not in str(refused.value)


def test_redact_masks_the_key_and_removes_other_credentials() -> None:
    text = f"key {PROJECT_KEY}, Authorization: Basic {BASIC}, db postgresql://app:{PASSWORD}@db/app"
    shown = redact(text, PROJECT_KEY)
    assert_no_credential(shown)
    assert mask_key(PROJECT_KEY) in shown and "postgresql://app:" in shown
    assert redact("nothing secret here", PROJECT_KEY) == "nothing secret here"


@pytest.fixture(autouse=True)
def _no_leftover_tracer() -> Iterator[None]:
    yield
    lunatrace.shutdown()


def test_the_echo_server_really_echoes() -> None:
    """The tests above mean something only if the key does come back in the answer."""
    import requests

    with EchoingServer(401, BODIES[0]) as server:
        answer = requests.post(server.url(), headers={"Authorization": f"Bearer {PROJECT_KEY}"}, timeout=5)
    assert PROJECT_KEY in json.loads(answer.text)["message"]


def test_the_ingest_client_never_shows_url_credentials() -> None:
    from lunatrace.core.config import Config
    from lunatrace.core.transport.http import IngestClient

    key = "6c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5"
    config = Config.resolve(env={}, project_key=key, api_url="https://ops:hunter2-secret@lunary.internal")
    shown = repr(IngestClient(config))
    assert "hunter2-secret" not in shown and key not in shown and "lunary.internal" in shown
