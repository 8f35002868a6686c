"""The serializer never raises, always yields JSON within the cap, and scrubs secrets."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import functools
import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pydantic
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lunatrace.core import json_text
from lunatrace.core.serialize import (
    MASKED,
    REDACTED,
    Deferred,
    FieldEncoder,
    _clean_texts,
    _Encoder,
    _PlainCheck,
    _resolved,
    cap_size,
    dumps,
    is_secret_key,
    scrub_text,
    shorten_limit,
    to_jsonable,
)
from tests.core.secret_shapes import (
    NEAR_MISSES,
    ORDINARY_KEYS,
    PROJECT_KEY,
    SECRET_EXAMPLES,
    SECRET_KEYS,
    SEPARATORS,
    credentials,
)


class Color(enum.Enum):
    RED = "red"
    NAN = float("nan")
    OBJ = (1, 2)


@dataclasses.dataclass
class Point:
    x: Any
    y: Any = None


class Model(pydantic.BaseModel):
    value: Any = None
    pin: pydantic.SecretStr = pydantic.SecretStr("hunter2")


class Plain:
    def __init__(self, value: Any) -> None:
        self.value = value


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class BadEverything:
    __slots__ = ()

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


class BadMapping(dict[str, Any]):
    def items(self) -> Any:
        raise RuntimeError("items exploded")


def counting() -> Iterator[int]:
    yield 1


def cyclic_list(inner: Any) -> list[Any]:
    value: list[Any] = [inner]
    value.append(value)
    return value


def cyclic_dict(inner: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"inner": inner}
    value["self"] = value
    return value


def cyclic_object(inner: Any) -> Plain:
    value = Plain(inner)
    value.me = value  # type: ignore[attr-defined]
    return value


_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**70, max_value=2**80),
    st.floats(),
    st.text(),
    st.sampled_from(["\ud800", "a\udfffb", "sk-" + "A" * 30, "Bearer abcdefghijklmnopqrstuvwxyz"]),
    st.binary(),
    st.binary().map(bytearray),
    st.datetimes(),
    st.datetimes(timezones=st.just(dt.timezone(dt.timedelta(hours=5)))),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.decimals(),
    st.sampled_from(list(Color)),
    st.builds(BadRepr),
    st.builds(BadEverything),
    st.just(PurePosixPath("/tmp/x")),
    st.builds(counting),
    st.just(Point),  # a class, not an instance
    st.floats().map(np.float64),
    st.integers(min_value=-(2**31), max_value=2**31 - 1).map(np.int32),
    st.lists(st.floats(), max_size=5).map(np.array),
    st.just(np.array([[1, 2], [3, 4]], dtype=object)),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    hashable = st.one_of(st.integers(), st.text(max_size=5), st.floats(allow_nan=False))
    return st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.sets(hashable, max_size=5),
        st.frozensets(hashable, max_size=5),
        st.dictionaries(
            st.one_of(st.text(max_size=12), st.integers(), st.tuples(st.integers())), inner, max_size=5
        ),
        st.dictionaries(st.sampled_from(["api_key", "password", "max_tokens", "token"]), inner, max_size=3),
        st.builds(Point, inner, inner),
        st.builds(Model, value=inner),
        st.builds(Plain, inner),
        st.builds(cyclic_list, inner),
        st.builds(cyclic_dict, inner),
        st.builds(cyclic_object, inner),
        st.builds(BadMapping, st.dictionaries(st.text(max_size=3), inner, max_size=2)),
    )


arbitrary = st.recursive(_leaves, _containers, max_leaves=30)


def compact_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=arbitrary, max_bytes=st.integers(min_value=256, max_value=20_000))
def test_encoder_never_raises_and_stays_within_the_cap(value: Any, max_bytes: int) -> None:
    out = FieldEncoder(max_bytes, secrets=("my-project-key-123",)).encode(value)
    assert compact_size(out) <= max_bytes
    assert "sk-" + "A" * 30 not in json.dumps(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=arbitrary)
def test_to_jsonable_never_raises_and_is_valid_json(value: Any) -> None:
    out = to_jsonable(value)
    text = json.dumps(out, allow_nan=False)
    text.encode("utf-8")  # no lone surrogates either
    assert json.loads(text) == out  # plain data already: JSON gives it back as it is


@settings(max_examples=100, deadline=None)
@given(text=st.text(min_size=1), max_bytes=st.integers(min_value=256, max_value=5_000))
def test_truncation_is_visible(text: str, max_bytes: int) -> None:
    value = text * (max_bytes // len(text) + 2)
    out = cap_size(value, max_bytes)
    assert compact_size(out) <= max_bytes
    assert isinstance(out, str) and "[lunatrace: truncated" in out


def test_long_strings_are_shortened_keeping_the_structure() -> None:
    value = {"question": "q", "context": "x" * 100_000}
    out = FieldEncoder(4_000).encode(value)
    assert out["question"] == "q"
    assert out["context"].startswith("xxx") and "[lunatrace: truncated" in out["context"]
    assert compact_size(out) <= 4_000


def test_values_are_converted_faithfully() -> None:
    when = dt.datetime(2026, 3, 4, 5, 6, 7, 8000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    value = {
        "when": when,
        "naive": dt.datetime(2026, 1, 1),
        "day": dt.date(2026, 1, 2),
        "span": dt.timedelta(seconds=90),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "set": {3, 1, 2},
        "bytes": b"caf\xc3\xa9",
        "binary": b"\xff\x00",
        "decimal": decimal.Decimal("1.5"),
        "huge": decimal.Decimal("1e400"),
        "color": Color.RED,
        "nan_color": Color.NAN,
        "tuple_color": Color.OBJ,
        "point": Point(1, [2]),
        "model": Model(value={"k": "v"}),
        "plain": Plain(3),
        "nan": float("nan"),
        "inf": float("-inf"),
        "bigint": 2**70,
        "gen": counting(),
        "np_scalar": np.float32(1.5),
        "np_nan": np.float64("nan"),
        "np_array": np.arange(3),
    }
    out = to_jsonable(value)
    assert out == {
        "when": "2026-03-04T03:06:07.008000Z",
        "naive": "2026-01-01T00:00:00",
        "day": "2026-01-02",
        "span": 90.0,
        "id": "12345678-1234-5678-1234-567812345678",
        "set": [1, 2, 3],
        "bytes": "café",
        "binary": "base64:/wA=",
        "decimal": 1.5,
        "huge": "inf",
        "color": "red",
        "nan_color": "nan",
        "tuple_color": "OBJ",
        "point": {"x": 1, "y": [2]},
        "model": {"value": {"k": "v"}, "pin": "**********"},
        "plain": {"value": 3},
        "nan": "nan",
        "inf": "-inf",
        "bigint": str(2**70),
        "gen": "<generator>",
        "np_scalar": 1.5,
        "np_nan": "nan",
        "np_array": [0, 1, 2],
    }


def test_generators_are_not_consumed() -> None:
    gen = counting()
    to_jsonable({"g": gen})
    assert next(gen) == 1


def test_cycles_and_depth_are_bounded() -> None:
    loop: dict[str, Any] = {}
    loop["me"] = loop
    assert to_jsonable(loop) == {"me": "<cycle: dict>"}
    deep: Any = "bottom"
    for _ in range(500):
        deep = [deep]
    text = json.dumps(to_jsonable(deep))
    assert "<max depth" in text and "bottom" not in text


def test_shared_references_are_not_cycles() -> None:
    shared = {"a": 1}
    assert to_jsonable([shared, shared]) == [{"a": 1}, {"a": 1}]


def test_unrepresentable_objects_degrade_to_a_marker() -> None:
    assert to_jsonable(BadRepr()) == "<BadRepr>"
    assert to_jsonable(BadEverything()) == "<unserializable BadEverything: RuntimeError>"
    assert to_jsonable(BadMapping(a=1)) == "<unserializable BadMapping: RuntimeError>"


# --- secrets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "apiKey",
        "openai_api_key",
        "openaiApiKey",
        "OPENAI_API_KEY",
        "x-api-key",
        "token",
        "access_token",
        "refresh_token",
        "hf_token",
        "secret",
        "client_secret",
        "password",
        "Authorization",
        "private_key",
        "aws_secret_access_key",
        "credentials",
        "cookie",
        *SECRET_KEYS,
    ],
)
def test_secret_looking_keys_are_redacted(key: str) -> None:
    assert is_secret_key(key)
    assert to_jsonable({key: "value-123"}) == {key: REDACTED}


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens",
        "maxTokens",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "max_new_tokens",
        "max_completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "tokens",
        "eos_token",
        "pad_token",
        "tokenizer",
        "keyword",
        "monkey",
        *ORDINARY_KEYS,
    ],
)
def test_counters_and_ordinary_keys_are_kept(key: str) -> None:
    assert not is_secret_key(key)
    assert to_jsonable({key: 7}) == {key: 7}


def test_secrets_are_redacted_at_any_depth_and_in_any_container() -> None:
    value = [
        {"config": {"llm": {"openai_api_key": "abc", "temperature": 0}}},
        Point(x={"password": "p"}, y=Model(value={"token": "t"})),
        ("x", {"headers": {"Authorization": "Bearer zzz"}}),
    ]
    text = json.dumps(to_jsonable(value))
    for secret in ('"abc"', '"p"', '"t"', "Bearer zzz"):
        assert secret not in text
    assert text.count(REDACTED) == 4
    assert '"temperature": 0' in text


def test_key_like_strings_and_configured_secrets_are_scrubbed_anywhere() -> None:
    key = "sk-proj-" + "a1B2" * 10
    project_key = "0b1e2f3a-1111-2222-3333-444455556666"
    value = {
        "note": f"my key is {key}!",
        "header": "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123",
        key: "as a key name",
        "log": f"connecting with {project_key}",
    }
    out = to_jsonable(value, (project_key,))
    text = json.dumps(out)
    assert key not in text and project_key not in text and "abcdefghijklmnopqrstuvwxyz0123" not in text
    assert out["note"] == f"my key is {REDACTED}!"
    assert out["log"] == f"connecting with {REDACTED}"
    assert scrub_text("sk-short") == "sk-short"  # too short to be a key


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("auth: bearer abcdefghijklmnopqrstuvwxyz", f"auth: {REDACTED}"),
        ("Bearer abcdefghijklmnop+qrstuv/wxyz==", REDACTED),  # the base64 tail goes too
        ("Authorization: Basic dXNlcjpodW50ZXIy", f"Authorization: {REDACTED}"),
        ("postgresql://app:s3cr3t@db:5432/app", f"postgresql://app:{REDACTED}@db:5432/app"),
        ("redis://:p@ss@cache:6379/0", f"redis://:{REDACTED}@cache:6379/0"),
        (
            "clone https://ghp_" + "a" * 36 + ":x@github.com",
            f"clone https://{REDACTED}:{REDACTED}@github.com",
        ),
        ("token github_pat_11ABCDEFG0_abcdefghijklmnop", f"token {REDACTED}"),
        ("slack xoxp-1234-5678-abcdefghij ok", f"slack {REDACTED} ok"),
        ("id=AKIAIOSFODNN7EXAMPLE;", f"id={REDACTED};"),
        ("hf_" + "x" * 34, REDACTED),
        ("k=AIza" + "y" * 35, f"k={REDACTED}"),
        (
            "key:\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\nbye",
            f"key:\n{REDACTED}\nbye",
        ),
        ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B", REDACTED),  # cut before its end
    ],
)
def test_every_documented_credential_shape_is_scrubbed(text: str, scrubbed: str) -> None:
    assert scrub_text(text) == scrubbed


def test_the_documented_list_names_every_shape() -> None:
    """docs/configuration.md#secrets is the list users read: it must not fall behind."""
    from lunatrace.core.serialize import _SHAPES

    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    section = docs[docs.index("## Secrets") :]
    for _, literals, _, _ in _SHAPES:
        assert any(literal in section.lower() for literal in literals), literals


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    credential=credentials(),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
    separators=st.tuples(SEPARATORS, SEPARATORS),
)
def test_a_credential_never_survives_whatever_text_surrounds_it(
    credential: tuple[str, str], before: str, after: str, separators: tuple[str, str]
) -> None:
    text, secret = credential
    assume(secret not in before and secret not in after)
    surrounded = before + separators[0] + text + separators[1] + after
    assert secret not in scrub_text(surrounded, (PROJECT_KEY,))
    encoder = FieldEncoder(64_000, secrets=(PROJECT_KEY,))
    for field in ({"note": surrounded}, [surrounded], surrounded):  # the fast path and the others
        assert secret not in json.dumps(json.loads(encoder.encode_json(field) or "null"))


@settings(max_examples=300, deadline=None)
@given(
    words=st.lists(st.one_of(st.sampled_from(NEAR_MISSES), st.text(max_size=12)), max_size=12),
    separator=st.sampled_from([" ", "\n", ", "]),
)
def test_ordinary_text_is_left_as_it_is(words: list[str], separator: str) -> None:
    text = separator.join(words)
    assert scrub_text(text) == text


# --- mask hook ----------------------------------------------------------------------


def test_mask_hook_rewrites_the_field() -> None:
    def mask(value: Any) -> Any:
        return json.loads(json.dumps(value).replace("ada@example.com", "<email>"))

    encoder = FieldEncoder(64_000, mask)
    assert encoder.encode({"to": "ada@example.com"}) == {"to": "<email>"}
    assert encoder.encode({"to": "ada@example.com"}, masked=False) == {"to": "ada@example.com"}


def test_mask_output_is_still_scrubbed_and_capped() -> None:
    encoder = FieldEncoder(300, lambda value: {"api_key": "leak", "big": "y" * 10_000})
    out = encoder.encode("anything")
    assert out["api_key"] == REDACTED
    assert compact_size(out) <= 300


def test_raising_mask_fails_closed_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    def mask(value: Any) -> Any:
        raise ValueError(f"cannot mask {value['email']}")  # the message holds the data to hide

    encoder = FieldEncoder(64_000, mask)
    with caplog.at_level(logging.DEBUG, logger="lunatrace"):
        outputs = [encoder.encode({"email": f"user{i}@example.com"}) for i in range(5)]
    assert outputs == [MASKED] * 5
    records = [r for r in caplog.records if "mask hook" in r.getMessage()]
    assert len(records) == 1 and records[0].levelname == "ERROR"
    assert "ValueError" in records[0].getMessage()
    assert "example.com" not in caplog.text and records[0].exc_info is None


def test_a_field_that_converts_to_nothing_is_not_given_to_the_mask() -> None:
    seen: list[Any] = []
    encoder = FieldEncoder(64_000, lambda value: seen.append(value) or "masked")
    assert encoder.encode_json(Deferred(lambda v: None, "an integration's conversion found nothing")) is None
    assert encoder.encode_json({"a": 1}) == '"masked"'
    assert seen == [{"a": 1}]


def test_dumps_is_compact_and_refuses_nan() -> None:
    assert dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    with pytest.raises(ValueError):
        dumps(float("nan"))


def test_huge_containers_are_cut_with_a_count() -> None:
    out = to_jsonable(list(range(5_000)))
    assert out[:3] == [0, 1, 2] and len(out) == 2_001 and out[-1] == "<3000 more items>"
    members = to_jsonable({BadReprKey(1), BadReprKey(2)})  # sorting by repr must not fail
    assert sorted(members, key=lambda m: m["n"]) == [{"n": 1}, {"n": 2}]
    big = to_jsonable({f"k{i}": i for i in range(3_000)})
    assert len(big) == 2_001 and big["<truncated>"] == "1000 more keys"


class BadReprKey:
    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __hash__(self) -> int:
        return self.n


def test_deferred_values_are_converted_only_when_encoded() -> None:
    from lunatrace.core.serialize import Deferred

    calls: list[object] = []

    def convert(value: object) -> object:
        calls.append(value)
        return {"converted": value, "api_key": "sk-deferredsecretvalue1234"}

    deferred = Deferred(convert, ["raw"])
    assert calls == []  # building the wrapper converts nothing
    assert to_jsonable({"payload": deferred}) == {
        "payload": {"converted": ["raw"], "api_key": "[lunatrace: redacted]"}
    }
    assert calls == [["raw"]]


def test_deferred_whose_conversion_raises_degrades_to_a_marker() -> None:
    from lunatrace.core.serialize import Deferred

    def broken(value: object) -> object:
        raise RuntimeError("boom")

    result = to_jsonable({"payload": Deferred(broken, 1), "kept": 2})
    assert result["kept"] == 2
    assert isinstance(result["payload"], str) and "unserializable" in result["payload"]


@given(arbitrary)
@settings(max_examples=300, deadline=None)
def test_size_bound_never_underestimates(value: object) -> None:
    """Fields whose bound is under the cap skip the exact measurement: the bound must hold."""
    from lunatrace.core.serialize import _Encoder

    encoder = _Encoder(())
    data = encoder.convert(value)
    assert len(json.dumps(data, ensure_ascii=False).encode("utf-8")) <= encoder.max_json_bytes()


# Text keys only: keys that convert to the same text (1 and "1") make one key of the output,
# and the bound from below counts them both.
_distinct_keys = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(max_size=8), inner, max_size=5),
        st.builds(Point, inner, inner),
        st.builds(Model, value=inner),
        inner.map(lambda v: Deferred(lambda x: {"resolved": x}, v)),
    ),
    max_leaves=30,
)


@given(_distinct_keys)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_size_bound_from_below_never_overestimates(value: object) -> None:
    """A field is cut only once it is certainly over its cap: that bound must hold too,
    or a field within the cap would lose text the fast path keeps."""
    from lunatrace.core.serialize import _Encoder

    encoder = _Encoder(())
    data = encoder.convert(value)
    assert compact_size(data) >= encoder._min_json_bytes()


# --- huge values: only what the cap keeps is converted ----------------------------------------

_MARKER = re.compile(r"…\[lunatrace: truncated (\d+) characters\]$")


def test_a_huge_string_is_cut_to_the_limit_and_counts_what_it_dropped() -> None:
    out = FieldEncoder(64_000).encode("x" * 5_000_000)
    found = _MARKER.search(out)
    assert found and len(out) <= shorten_limit(64_000)
    assert out.index("…") + int(found.group(1)) == 5_000_000


@pytest.mark.parametrize("offset", range(-200, 12, 10))
def test_a_credential_across_the_cut_goes_whole(offset: int) -> None:
    """Only the kept part of a huge string is scrubbed, and the text just after it: a
    password that begins before the cut must not leave its beginning behind."""
    start = shorten_limit(64_000) + offset
    out = FieldEncoder(64_000).encode("x" * start + " postgresql://app:" + "Q" * 150 + "@db " + "y" * 200_000)
    assert "QQQQ" not in out and "[lunatrace: truncated" in out


def test_a_huge_list_keeps_what_fits_and_counts_the_rest() -> None:
    out = FieldEncoder(64_000).encode(["z" * 10_000] * 100_000)
    assert isinstance(out, list) and compact_size(out) <= 64_000
    assert out[-1] == f"<{100_000 - (len(out) - 1)} more items>"
    assert all(item.startswith("zzz") for item in out[:-1])


def test_a_field_far_over_the_cap_says_its_count_is_a_lower_bound() -> None:
    out = FieldEncoder(4_000).encode([[1.5] * 1_500] * 1_500)
    assert isinstance(out, str) and compact_size(out) <= 4_000
    assert "…[lunatrace: truncated at least " in out


def test_huge_bytes_are_decoded_only_as_far_as_the_cap_keeps() -> None:
    text = FieldEncoder(64_000).encode("é".encode() * 3_000_000)
    assert text.startswith("éé") and "[lunatrace: truncated" in text and len(text) <= shorten_limit(64_000)
    binary = FieldEncoder(64_000).encode(bytearray(b"\xff" * 3_000_000))
    assert binary.startswith("base64://///") and "[lunatrace: truncated" in binary
    assert FieldEncoder(64_000).encode(memoryview(b"caf\xc3\xa9")) == "café"


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
def test_numpy_arrays_convert_only_the_rows_they_keep() -> None:
    assert to_jsonable(np.arange(5_000)) == [*range(2_000), "<3000 more items>"]
    assert to_jsonable(np.arange(6).reshape(2, 3)) == [[0, 1, 2], [3, 4, 5]]
    assert to_jsonable(np.matrix([[1, 2], [3, 4]])) == [[1, 2], [3, 4]]
    out = FieldEncoder(4_000).encode(np.zeros((3_000, 3_000)))
    assert compact_size(out) <= 4_000


def test_a_deferred_string_is_counted_once() -> None:
    """Counted twice, it would make a field within its cap look over it, and cut."""
    value = [Deferred(lambda v: v, "x" * 30_000), "y" * 30_000]
    encoder = FieldEncoder(64_000)
    assert encoder.encode(value) == ["x" * 30_000, "y" * 30_000]
    assert encoder.encode_json(value) == _general_json(value, 64_000)


# --- the JSON fast path -------------------------------------------------------------------

_plain_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**80),
    st.floats(),
    st.text(),
    st.sampled_from(
        [
            "\ud800",
            "my-project-key-123",
            "a my-project-key-123 b",
            "sk-" + "A" * 30,
            "x\nsk-" + "B" * 20,
            "Bearer abcdefghijklmnopqrstuvwxyz",
            "TOKEN",
            'quote"and\\backslash',
            *SECRET_EXAMPLES,
            *NEAR_MISSES,
        ]
    ),
)


def _plain_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.one_of(
        st.text(max_size=12),
        st.sampled_from(
            [
                "api_key",
                "openaiApiKey",
                "x-api-key",
                "password",
                "max_tokens",
                "token",
                "Cookie",
                *SECRET_KEYS,
            ]
        ),
        st.integers(),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False),
    )
    return st.one_of(
        st.lists(inner, max_size=6),
        st.tuples(inner, inner),
        st.dictionaries(keys, inner, max_size=5),
        inner.map(lambda v: Deferred(lambda x: {"resolved": x}, v)),
    )


plain = st.recursive(_plain_leaves, _plain_containers, max_leaves=40)


def _general_json(value: Any, max_bytes: int) -> str | None:
    data = FieldEncoder(max_bytes, secrets=("my-project-key-123",)).encode(value)
    return None if data is None else dumps(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(plain, arbitrary), max_bytes=st.integers(min_value=64, max_value=20_000))
def test_json_fast_path_gives_exactly_the_general_result(value: Any, max_bytes: int) -> None:
    encoder = FieldEncoder(max_bytes, secrets=("my-project-key-123",))
    assert encoder.encode_json(value) == _general_json(value, max_bytes)


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        _nested(45),
        list(range(2_500)),
        {f"k{i}": i for i in range(2_100)},
        {"nested": {"authorization": "Basic abc"}},
        {"n": 2**64},
        "x" * 70_000,
        {"text": "x" * 70_000},
        [[0.5] * 1_000] * 100,
        {"pwd": "hunter2"},
        {"to\u212aen": "t"},
        ["see postgresql://app:pw@db/app"],
    ],
    ids=[
        "deep",
        "long-list",
        "many-keys",
        "secret-key",
        "huge-int",
        "over-the-cap",
        "long-string",
        "long-lists",
        "new-secret-key",
        "kelvin-key",
        "url-password",
    ],
)
def test_json_fast_path_defers_to_the_general_path_at_every_limit(value: Any) -> None:
    encoder = FieldEncoder(64_000, secrets=("my-project-key-123",))
    assert encoder._plain_json(value) is None  # the fast path must step aside...
    assert encoder.encode_json(value) == _general_json(value, 64_000)  # ...for the same result


def test_json_fast_path_takes_ordinary_payloads() -> None:
    encoder = FieldEncoder(64_000, secrets=("my-project-key-123",))
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi"}]
    assert encoder._plain_json(messages) == dumps(messages)
    assert encoder._plain_json(Deferred(lambda v: v, messages)) == dumps(messages)
    assert encoder.encode_json(None) is None


@settings(max_examples=300, deadline=None)
@given(value=plain)
def test_the_compiled_encoders_write_what_the_standard_one_does_for_checked_data(value: Any) -> None:
    check = _PlainCheck(10**9)
    assume(check.fits(value, 0))
    expected = json_text._python_json(value, _resolved)
    assert json_text.c_json is json_text._c_json  # on CPython the C encoder is called directly
    assert json_text.c_json(value, _resolved) == expected
    assert json_text.plain_json(value, _resolved, check.tiny_floats) == (
        expected,
        len(expected.encode("utf-8")),
    )


@pytest.mark.parametrize("value", [1e-05, -3.5e-07, [0.5, 2e-9]])
def test_tiny_floats_are_written_by_the_c_encoder_which_orjson_would_write_otherwise(value: Any) -> None:
    check = _PlainCheck(64_000)
    assert check.fits(value, 0) and check.tiny_floats
    assert json_text.orjson.dumps(value).decode() != dumps(value)  # why the check exists
    assert FieldEncoder(64_000)._plain_json(value) == dumps(value)


@pytest.mark.parametrize("value", [float("nan"), [float("inf")], {"x": -float("inf")}])
def test_non_finite_floats_leave_the_fast_path_which_would_write_null(value: Any) -> None:
    assert json_text.orjson.dumps(value).count(b"null") == 1  # why the check exists
    encoder = FieldEncoder(64_000)
    assert encoder._plain_json(value) is None
    assert encoder.encode_json(value) == _general_json(value, 64_000)
    assert "null" not in (encoder.encode_json(value) or "")


def _deep(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``inner`` nested 35 to 45 levels deep, in lists and dicts: across ``MAX_DEPTH``."""
    return st.tuples(inner, st.integers(min_value=35, max_value=45), st.booleans()).map(
        lambda args: functools.reduce(
            lambda v, i: {"k": v} if args[2] and i % 2 else [v], range(args[1]), args[0]
        )
    )


_awkward_leaves = st.one_of(
    _plain_leaves,
    st.floats(min_value=-1e-4, max_value=1e-4),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 2**63, -(2**63), 2**63 + 1, 2**64]),
    st.integers(min_value=1_000, max_value=40_000).map(lambda n: "word " * n),  # over any cap here
    st.sampled_from(["see https://user:pw@host/x", "Authorization: Bearer " + "t" * 30, "aKia" + "B" * 16]),
)
awkward = st.one_of(
    st.recursive(_awkward_leaves, _plain_containers, max_leaves=30),
    _deep(st.recursive(_awkward_leaves, _plain_containers, max_leaves=5)),
)


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(value=awkward, max_bytes=st.integers(min_value=64, max_value=100_000))
def test_the_fast_path_is_byte_identical_on_deep_large_and_awkward_payloads(
    value: Any, max_bytes: int
) -> None:
    encoder = FieldEncoder(max_bytes, secrets=("my-project-key-123",))
    assert encoder.encode_json(value) == _general_json(value, max_bytes)


def test_a_text_scrubbed_unchanged_is_remembered_and_one_that_changes_is_not() -> None:
    clean, dirty = "an ordinary message " * 10, "key sk-" + "A" * 30
    assert scrub_text(clean) == clean and clean in _clean_texts.texts
    assert scrub_text(dirty) != dirty and dirty not in _clean_texts.texts
    assert FieldEncoder(64_000)._plain_json([clean, {"content": dirty}]) is None


def test_a_very_long_text_is_scrubbed_but_not_kept_alive() -> None:
    text = "plain prose " * 10_000  # 120,000 characters
    assert scrub_text(text) == text
    assert text not in _clean_texts.texts


def test_a_remembered_text_still_loses_a_configured_secret() -> None:
    text = "connect with my-project-key-123 please"
    assert scrub_text(text) == text and text in _clean_texts.texts
    assert scrub_text(text, ("my-project-key-123",)) == f"connect with {REDACTED} please"
    assert FieldEncoder(64_000, secrets=("my-project-key-123",)).encode_json([text]) == dumps(
        [f"connect with {REDACTED} please"]
    )


def test_ordinary_text_about_tokens_and_keys_takes_the_fast_path() -> None:
    history = [
        {
            "role": "user",
            "content": "How many tokens does my key allow? The token limit, the password rules.",
        },
        {"role": "assistant", "content": "Basic plans allow 4,096 tokens; see https://example.com/docs."},
    ] * 30
    encoder = FieldEncoder(64_000, secrets=("my-project-key-123",))
    assert encoder._plain_json(history) == dumps(history)


_flat_keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["api_key", "token", "max_tokens", "my-project-key-123", "sk-" + "A" * 30, *SECRET_KEYS]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.dictionaries(
        _flat_keys, st.one_of(_awkward_leaves, st.lists(_plain_leaves, max_size=2)), max_size=6
    ),
    max_bytes=st.integers(min_value=64, max_value=100_000),
)
def test_flat_dicts_are_kept_as_they_are_only_when_the_conversion_would_keep_them(
    value: dict[Any, Any], max_bytes: int
) -> None:
    encoder = FieldEncoder(max_bytes, secrets=("my-project-key-123",))
    if encoder.keeps_flat(value):
        assert encoder.encode(value) == value


@pytest.mark.parametrize(
    "value",
    [
        {"note": "holds my-project-key-123"},
        {"my-project-key-123": 1},
        {"api_key": "abc"},
        {"note": "see https://user:pw@host/x"},
        {"x": float("nan")},
        {"n": 2**64},
        {"text": "x" * 70_000},
        {"nested": {"a": 1}},
        {"listed": [1, 2]},
        {"deferred": Deferred(str, 1)},
        {1: "a non-string key"},
    ],
    ids=[
        "secret-value",
        "secret-key-text",
        "secret-key",
        "url-password",
        "nan",
        "huge-int",
        "over-the-cap",
        "nested",
        "list",
        "deferred",
        "int-key",
    ],
)
def test_a_flat_dict_the_conversion_changes_is_not_kept(value: dict[Any, Any]) -> None:
    assert not FieldEncoder(64_000, secrets=("my-project-key-123",)).keeps_flat(value)


def test_a_flat_dict_is_kept_unless_a_mask_applies() -> None:
    metadata = {"ls_provider": "openai", "step": 2, "ratio": 0.5, "ok": True, "none": None}
    assert FieldEncoder(64_000, secrets=("my-project-key-123",)).keeps_flat(metadata)
    assert not FieldEncoder(64_000, mask=lambda value: "hidden").keeps_flat(metadata)


def test_short_texts_are_written_once_per_encoder_and_scrubbed_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lunatrace.core import serialize

    keyed = FieldEncoder(64_000, secrets=("my-project-key-123",))
    plain = FieldEncoder(64_000)
    name = "run for my-project-key-123"
    for _ in range(2):  # the second time from memory: the same text, each encoder its own
        assert keyed.text_json(name) == json.dumps(f"run for {REDACTED}", ensure_ascii=False)
        assert plain.text_json(name) == json.dumps(name)
        assert keyed.text_json("sk-" + "A" * 30) == json.dumps(REDACTED)
        assert keyed.text_json("é\n") == '"é\\n"'
    long = "x" * (serialize.SHORT_TEXT + 1)
    assert keyed.text_json(long) == json.dumps(long) and long not in keyed._short_texts
    monkeypatch.setattr(serialize, "SHORT_TEXTS", 3)
    for index in range(10):
        assert keyed.text_json(f"name {index}") == f'"name {index}"'
        assert len(keyed._short_texts) <= 3


class _TextAccessor(str):
    """A ``str`` subclass like LangChain's outputs, with a ``__str__`` of its own."""

    def __str__(self) -> str:
        return "not the content"


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.text(max_size=300), st.sampled_from(SECRET_EXAMPLES), st.just("y" * 5_000)),
    max_bytes=st.integers(min_value=64, max_value=8_000),
)
def test_a_str_subclass_is_written_as_the_general_conversion_writes_its_content(
    text: str, max_bytes: int
) -> None:
    encoder = FieldEncoder(max_bytes, secrets=(PROJECT_KEY,))
    general = _Encoder(encoder.secrets, max_bytes).convert(
        _TextAccessor(text)
    )  # no shortcut: the converter itself
    expected = cap_size(general, max_bytes)
    assert encoder.encode_json(_TextAccessor(text)) == dumps(expected)
    assert encoder.encode_json(_TextAccessor(text)) == encoder.encode_json(text)  # as the plain string is
