"""The ingestion client resolves the environment once: proxies and the CA bundle still
apply, ``~/.netrc`` cannot replace the project key, and the key is never shown; what an
error answer says is read from its whole body."""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

import lunatrace
from lunatrace.core.config import Config, mask_key
from lunatrace.core.transport.http import EMPTY_BATCH, MESSAGE_CHARS, IngestClient, Kind
from tests.core.transport.helpers import assert_delivered_in_order, emit_traces, send_to
from tests.support.fake_lunary import INGEST_PATH, FakeLunary

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class ForwardingProxy:
    """A plain HTTP forward proxy on 127.0.0.1 that records the requests it relays."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append((self.path, dict(self.headers)))
                target = urlsplit(self.path)  # absolute form: http://host:port/path
                relayed = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")
                }
                connection = http.client.HTTPConnection(target.hostname or "", target.port, timeout=5)
                try:
                    connection.request("POST", target.path, body=body, headers=relayed)
                    answer = connection.getresponse()
                    data = answer.read()
                finally:
                    connection.close()
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("Content-Type") or "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No proxy, CA bundle or netrc from the machine running the tests."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "absent-netrc"))


@pytest.fixture
def proxy() -> Iterator[ForwardingProxy]:
    forwarding = ForwardingProxy()
    yield forwarding
    forwarding.close()


def client_for(server: FakeLunary) -> IngestClient:
    return IngestClient(Config.resolve(env={}, project_key=server.key, api_url=server.url))


def test_a_proxy_from_the_environment_carries_the_requests(
    monkeypatch: pytest.MonkeyPatch, lunary_server: FakeLunary, proxy: ForwardingProxy
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client = client_for(lunary_server)
    assert client.post(EMPTY_BATCH).kind is Kind.OK
    assert [path for path, _ in proxy.seen] == [lunary_server.url + INGEST_PATH]
    assert proxy.seen[0][1]["Authorization"] == f"Bearer {lunary_server.key}"
    assert len(lunary_server.requests) == 1  # relayed to the server


def test_the_environment_is_read_when_the_session_is_made(
    monkeypatch: pytest.MonkeyPatch, lunary_server: FakeLunary, proxy: ForwardingProxy
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client = client_for(lunary_server)
    monkeypatch.delenv("HTTP_PROXY")
    assert client.post(EMPTY_BATCH).kind is Kind.OK
    assert len(proxy.seen) == 1  # resolved at creation: still through the proxy
    client.reset()  # after a fork: a fresh session, the environment read again
    assert client.post(EMPTY_BATCH).kind is Kind.OK
    assert len(proxy.seen) == 1 and len(lunary_server.requests) == 2
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client.reset()
    assert client.post(EMPTY_BATCH).kind is Kind.OK
    assert len(proxy.seen) == 2


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*"])
def test_no_proxy_is_respected(
    monkeypatch: pytest.MonkeyPatch, lunary_server: FakeLunary, proxy: ForwardingProxy, no_proxy: str
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert client_for(lunary_server).post(EMPTY_BATCH).kind is Kind.OK
    assert proxy.seen == [] and len(lunary_server.requests) == 1


def test_traces_are_delivered_through_an_environment_proxy(
    monkeypatch: pytest.MonkeyPatch, lunary_server: FakeLunary, proxy: ForwardingProxy, tmp_path: Path
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    send_to(lunary_server, tmp_path / "spool.db")
    expected = emit_traces(5)
    assert lunatrace.flush(10)
    assert_delivered_in_order(lunary_server, expected)
    assert proxy.seen and all(path == lunary_server.url + INGEST_PATH for path, _ in proxy.seen)


def test_the_ca_bundle_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-bundle.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(missing))
    config = Config.resolve(env={}, project_key="k" * 36, api_url="https://127.0.0.1:9", http_timeout=1)
    answer = IngestClient(config).post(EMPTY_BATCH)
    assert answer.kind is Kind.RETRY and str(missing) in answer.detail  # requests checked that path
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    answer = IngestClient(config).post(EMPTY_BATCH)
    assert answer.kind is Kind.RETRY and str(missing) not in answer.detail


@pytest.fixture
def netrc_for_localhost(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1\n  login someone\n  password other-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


def test_a_netrc_entry_does_not_replace_the_project_key(
    netrc_for_localhost: Path, lunary_server: FakeLunary
) -> None:
    assert client_for(lunary_server).post(EMPTY_BATCH).kind is Kind.OK
    assert lunary_server.requests[-1].headers["Authorization"] == f"Bearer {lunary_server.key}"


def test_credentials_in_the_api_url_do_not_replace_the_project_key(lunary_server: FakeLunary) -> None:
    # requests turns a user:password@ in the URL into Basic credentials sent instead of the
    # key; the key must stay the Authorization, and the URL's password is sent nowhere.
    url = lunary_server.url.replace("http://", "http://ops:hunter2@")
    config = Config.resolve(env={}, project_key=lunary_server.key, api_url=url)
    assert IngestClient(config).post(EMPTY_BATCH).kind is Kind.OK
    assert lunary_server.requests[-1].headers["Authorization"] == f"Bearer {lunary_server.key}"
    session = requests.Session()  # the guard: a default session sends Basic instead
    session.headers["Authorization"] = f"Bearer {lunary_server.key}"
    session.post(url + INGEST_PATH, data=EMPTY_BATCH, timeout=5)
    session.close()
    assert lunary_server.requests[-1].headers["Authorization"].startswith("Basic ")


def test_the_netrc_entry_would_replace_it_in_a_default_session(
    netrc_for_localhost: Path, lunary_server: FakeLunary
) -> None:
    """Guard for the test above: requests applies the file when it trusts the environment."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {lunary_server.key}"
    answer = session.post(lunary_server.url + INGEST_PATH, data=EMPTY_BATCH, timeout=5)
    session.close()
    assert answer.status_code == 401
    assert lunary_server.requests[-1].headers["Authorization"].startswith("Basic ")


def test_the_key_is_never_shown(
    monkeypatch: pytest.MonkeyPatch,
    lunary_server: FakeLunary,
    proxy: ForwardingProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client = client_for(lunary_server)
    with caplog.at_level(logging.DEBUG):
        assert client.post(EMPTY_BATCH).kind is Kind.OK
        lunary_server.valid_keys.clear()
        refused = client.post(EMPTY_BATCH)
    assert refused.kind is Kind.CONFIG and lunary_server.key not in refused.detail
    assert caplog.records  # requests' and urllib3's own debug logging was captured
    assert lunary_server.key not in caplog.text
    assert repr(client) == f"IngestClient(url={client.url!r}, key={mask_key(lunary_server.key)!r})"
    assert lunary_server.key not in repr(client) and lunary_server.key not in str(client)


def test_a_long_json_error_body_yields_its_message(lunary_server: FakeLunary) -> None:
    lunary_server.fail_next(1, 400, body={"message": "Invalid event", "stack": "at ingest " * 200})
    answer = client_for(lunary_server).post(EMPTY_BATCH)
    assert (answer.kind, answer.detail) == (Kind.REFUSED, "Invalid event")


def test_a_long_message_and_a_long_text_body_are_cut(lunary_server: FakeLunary) -> None:
    lunary_server.fail_next(1, 400, body={"message": "m" * 1_000})
    lunary_server.fail_next(1, 400, body=b"plain text " * 100)
    client = client_for(lunary_server)
    assert client.post(EMPTY_BATCH).detail == "m" * MESSAGE_CHARS
    assert client.post(EMPTY_BATCH).detail == ("plain text " * 100)[:MESSAGE_CHARS].strip()
