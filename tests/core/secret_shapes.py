"""Credentials as they appear in traced text, and text that only looks like them.

Shared by the serializer's tests and the tests of what lunatrace prints: every shape the
scrubber documents (docs/configuration.md#secrets) is generated here, so a shape added
there without a generator here is not tested anywhere.
"""

from __future__ import annotations

import base64
import string

from hypothesis import strategies as st

PROJECT_KEY = "0b3c5e8a-6d41-4f2a-9c77-1e2d3f4a5b6c"

_ALNUM = string.ascii_letters + string.digits
_BASE64 = _ALNUM + "+/"

# One of each shape, for strategies that mix them with ordinary data.
SECRET_EXAMPLES = [
    "bearer abcdefghijklmnop+/qrstuvwx==",
    "Authorization: Basic dXNlcjpodW50ZXIy",  # user:hunter2
    "postgresql://app:s3cr3t-pw@db.internal:5432/app",
    "redis://:hunter2hunter2@cache:6379",
    "ghp_" + "a1B2" * 9,
    "github_pat_" + "11ABCDEFG0_" * 3,
    "xoxb-1234567890-abcdefghij",
    "AKIAIOSFODNN7EXAMPLE",
    "hf_" + "aB3" * 11,
    "AIzaSy" + "A1b2C3d4" * 4 + "x",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA",  # cut before its end
]

# Ordinary text that shares a word or a prefix with a credential shape.
NEAR_MISSES = [
    "basic idea",
    "Basic dGhpcw==",  # base64 of "this": no user:password in it
    "bearer of bad news",
    "Bearer short",
    "https://example.com:8443/a@b",
    "http://localhost:8080/",
    "https://user@host.example/",
    "ssh://git@github.com/org/repo",
    "git@github.com:org/repo.git",
    "mailto:ada@example.com",
    "user@example.com",
    "-----BEGIN PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----",
    "Asia",
    "AKIA",
    "AIzaShort",
    "xoxo-hugs-and-kisses",
    "gh_pages",
    "ghp",
    "hf",
    "task-management-system",  # "sk-" inside a word
    "12345678901234567890",
    "the author has authority",
    "a passenger bypassed the compass",
]

SECRET_KEYS = [
    "pwd",
    "DB_PWD",
    "auth",
    "x-auth",
    "oauth",
    "passwd",
    "db_pass",
    "PASS",
    "secret_key",
    "SECRET_KEY",
    "signingKey",
    "encryption_key",
    "dsn",
    "sentry_dsn",
    "api_\u212aey",  # the Kelvin sign lower-cases to "k"
    "to\u212aen",
]
ORDINARY_KEYS = ["author", "authority", "bypass", "compass", "passenger", "keyboard_layout"]


def _token(alphabet: str, low: int, high: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=low, max_size=high)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _url(parts: tuple[str, str, str, str, str]) -> tuple[str, str]:
    scheme, user, password, host, path = parts
    return f"{scheme}://{user}:{password}@{host}{path}", password


def _pem(parts: tuple[str, list[str], bool]) -> tuple[str, str]:
    kind, lines, ended = parts
    body = "\n".join(lines)
    end = f"\n-----END {kind}PRIVATE KEY-----" if ended else ""
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}{end}", body


def credentials() -> st.SearchStrategy[tuple[str, str]]:
    """``(text, secret)``: a credential as it would appear in text, and the part of it that
    must never survive scrubbing."""
    return st.one_of(
        _token(_ALNUM + "_-", 16, 60).map(lambda t: ("sk-" + t, t)),
        st.tuples(
            st.sampled_from(["Bearer", "bearer", "BEARER"]),
            st.sampled_from([" ", "  ", "\t"]),
            _token(_ALNUM + "-._~+/", 16, 60),
            st.sampled_from(["", "=", "=="]),
        ).map(lambda p: ("".join(p), p[2])),
        st.tuples(
            st.sampled_from(["Basic", "basic"]),
            _token(_ALNUM + ".-_!", 1, 20),
            _token(_ALNUM + "._!@:", 6, 30),
        ).map(lambda p: (f"{p[0]} {_b64(p[1] + ':' + p[2])}", _b64(p[1] + ":" + p[2]))),
        st.tuples(
            st.sampled_from(["postgresql", "mysql", "redis", "https", "amqp", "mongodb+srv"]),
            _token(_ALNUM + ".-_", 0, 12),
            _token(_ALNUM + "!$%&*+,;=._~-", 8, 30),
            st.sampled_from(["db.internal", "10.0.0.5:5432", "host"]),
            st.sampled_from(["", "/app", "/0?ssl=true"]),
        )
        .filter(lambda p: p[2] not in p[1])
        .map(_url),
        st.tuples(st.sampled_from(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]), _token(_ALNUM, 20, 40)).map(
            lambda p: (p[0] + p[1], p[1])
        ),
        _token(_ALNUM + "_", 20, 82).map(lambda t: ("github_pat_" + t, t)),
        st.tuples(st.sampled_from("abeprsc"), _token(_ALNUM + "-", 10, 50)).map(
            lambda p: (f"xox{p[0]}-{p[1]}", p[1])
        ),
        st.tuples(
            st.sampled_from(["AKIA", "ASIA"]), _token(string.ascii_uppercase + string.digits, 16, 16)
        ).map(lambda p: (p[0] + p[1], p[0] + p[1])),
        _token(_ALNUM, 30, 40).map(lambda t: ("hf_" + t, t)),
        _token(_ALNUM + "_-", 35, 35).map(lambda t: ("AIza" + t, t)),
        st.tuples(
            st.sampled_from(["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED "]),
            st.lists(_token(_BASE64, 8, 64), min_size=1, max_size=4),
            st.booleans(),
        ).map(_pem),
        st.just((PROJECT_KEY, PROJECT_KEY)),
    )


# What may stand between a credential and the text around it.
SEPARATORS = st.sampled_from([" ", "\n", "\t", ", ", "; ", "(", ")", '"', "'", "<", ">", "[", "]"])
