"""Every event kind against the Lunary ingestion wire contract, and the builder's guarantees."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lunatrace
from lunatrace.core import events
from lunatrace.core.events import EventError, MonotonicClock, build, to_wire, uuid_from_seed
from lunatrace.core.serialize import FieldEncoder
from lunatrace.core.timestamps import format_timestamp
from lunatrace.core.transport import MemorySink
from lunatrace.core.transport.batch import event_header
from tests.support.wire import RUN_TYPES, assert_wire_event, is_uuid

ENCODER = FieldEncoder(64_000)
RID = "6f1c1d9e-3b8a-4f57-9d2a-0d7c2b1e4a10"
PARENT = "0b7e5a54-2f6d-4f0e-8b8e-6f3a1d2c9e77"


def one(sink: MemorySink, kind: str, run_id: str | None = None) -> dict[str, Any]:
    found = [e for e in sink.events if e["event"] == kind and (run_id is None or e["runId"] == run_id)]
    assert len(found) == 1, found
    assert_wire_event(found[0])
    return found[0]


def test_start_event_carries_every_start_field(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    with (
        lunatrace.identify(42, {"plan": "pro"}),
        lunatrace.tags(["outer"]),
        lunatrace.metadata({"env": "test", "nested": {"a": [1, 2]}, "dropped": None}),
    ):
        root = tracer.start_run("agent", "planner", {"question": "why?"})
        child = tracer.start_run(
            "tool",
            "search",
            {"q": "x"},
            parent_run_id=root,
            params={"temperature": 0.2, "max_tokens": 10},
            tags=["inner", "outer"],
            metadata={"step": 3},
        )
    start = one(memory_sink, "start", child)
    assert start["type"] == "tool"
    assert start["runId"] == child and is_uuid(child)
    assert start["parentRunId"] == root
    assert start["name"] == "search"
    assert start["input"] == {"q": "x"}
    assert start["params"] == {"temperature": 0.2, "max_tokens": 10}
    assert start["tags"] == ["outer", "inner"]  # context first, no duplicates
    assert start["metadata"] == {"env": "test", "nested": '{"a":[1,2]}', "step": 3}
    assert start["userId"] == "42"
    assert start["userProps"] == {"plan": "pro"}
    assert "parentRunId" not in one(memory_sink, "start", root)


def test_end_event_of_an_llm_run_carries_type_and_tokens(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    rid = tracer.start_run("llm", "gpt-4o-mini", [{"role": "user", "content": "hi"}])
    usage = {"prompt": 3, "completion": 5}
    assert tracer.end_run(rid, {"role": "assistant", "content": "hello"}, usage=usage)
    end = one(memory_sink, "end", rid)
    assert end["type"] == "llm"  # switches on the server's token and cost logic
    assert end["tokensUsage"] == {"prompt": 3, "completion": 5}
    assert end["output"] == {"role": "assistant", "content": "hello"}
    assert "metadata" not in end  # reported usage is not an estimate
    assert "name" not in end and "input" not in end


def test_llm_end_without_usage_sends_a_flagged_estimate(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    rid = tracer.start_run("llm", "gpt-4", [{"role": "user", "content": "hello world"}])
    tracer.end_run(rid, {"role": "assistant", "content": "hello world"})
    end = one(memory_sink, "end", rid)
    assert end["metadata"] == {"tokensEstimated": True}
    assert end["tokensUsage"]["prompt"] > 0 and end["tokensUsage"]["completion"] > 0


def test_error_event_has_message_and_the_exceptions_own_stack(memory_sink: MemorySink) -> None:
    def failing_step() -> None:
        raise KeyError("missing")

    tracer = lunatrace.get_tracer()
    rid = tracer.start_run("chain", "pipeline", None)
    try:
        failing_step()
    except KeyError as exc:
        caught = exc
    # Reported outside the except block: sys.exc_info() is empty here.
    assert tracer.error_run(rid, caught)
    error = one(memory_sink, "error", rid)
    assert error["type"] == "chain"
    assert error["error"]["message"] == "KeyError: 'missing'"
    assert "Traceback" in error["error"]["stack"]
    assert "failing_step" in error["error"]["stack"]


def test_feedback_event_uses_the_runs_type(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    rid = tracer.start_run("agent", "a", None)
    tracer.end_run(rid, "done")
    assert lunatrace.feedback(rid, thumb="up", comment="great", rating=5, emoji="🎉")
    event = one(memory_sink, "feedback", rid)
    assert event["type"] == "agent"
    assert event["feedback"] == {"thumb": "up", "comment": "great", "rating": 5, "emoji": "🎉"}
    assert "parentRunId" not in event and "userId" not in event


def test_feedback_for_a_run_of_another_process(memory_sink: MemorySink) -> None:
    other = str(uuid.uuid4())
    assert lunatrace.feedback(other, thumb="down")
    assert one(memory_sink, "feedback", other)["type"] == "chain"


def test_bad_feedback_is_refused_without_raising(memory_sink: MemorySink) -> None:
    rid = str(uuid.uuid4())
    assert lunatrace.feedback(rid, thumb="sideways") is False
    assert lunatrace.feedback(rid) is False  # nothing to send
    assert memory_sink.events == []


def test_thread_message_event(memory_sink: MemorySink) -> None:
    thread = lunatrace.open_thread(tags=["support"], user_id=7, user_props={"name": "Ada"})
    mid = thread.track_message("user", "my order is late", metadata={"channel": "web"}, tags=["urgent"])
    event = one(memory_sink, "chat", mid)
    assert event["type"] == "thread"
    assert event["runId"] == mid and is_uuid(mid)
    assert event["parentRunId"] == thread.id and is_uuid(thread.id)
    assert event["message"] == {
        "role": "user",
        "content": "my order is late",
        "metadata": {"channel": "web"},
        "tags": ["urgent"],
    }
    assert event["threadTags"] == ["support"]
    assert event["userId"] == "7"
    assert event["userProps"] == {"name": "Ada"}


def test_thread_message_without_extras_has_no_null_fields(memory_sink: MemorySink) -> None:
    thread = lunatrace.open_thread()
    mid = thread.track_message("assistant", "hello")
    event = one(memory_sink, "chat", mid)
    assert event["message"] == {"role": "assistant", "content": "hello"}
    assert {"threadTags", "userId", "userProps", "metadata"}.isdisjoint(event)


def test_null_fields_are_dropped_not_sent() -> None:
    raw = build("end", "chain", RID, output=None, metadata=None, parent_run_id=None)
    raw[events.TIMESTAMP_KEY] = 0
    wire = to_wire(raw, ENCODER)
    assert set(wire) == {"type", "event", "runId", "timestamp", "runtime"}


def test_run_ids_are_canonical_uuid_strings() -> None:
    raw = build("start", "chain", RID.upper(), parent_run_id=uuid.UUID(PARENT))
    wire = to_wire(raw, ENCODER)
    assert wire["runId"] == RID
    assert wire["parentRunId"] == PARENT


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        # The server's own digest (uuidFromSeed: SHA-256, shaped as a version-4 UUID).
        ("msg-1", "3a0de379-32e8-4197-a6f2-0b22414f862f"),
        ("conv-42", uuid_from_seed("conv-42")),
        # Only a 36-character id is kept as it is: a bare 32-digit hex is hashed too.
        (uuid.UUID(RID).hex, uuid_from_seed(uuid.UUID(RID).hex)),
        ("é" * 36, uuid_from_seed("é" * 36)),
    ],
)
def test_any_string_id_becomes_the_uuid_the_server_keeps(given: str, stored: str) -> None:
    wire = to_wire(build("chat", "thread", given, parent_run_id=given, message={"role": "user"}), ENCODER)
    assert wire["runId"] == wire["parentRunId"] == stored
    assert is_uuid(stored)


@pytest.mark.parametrize(
    ("field", "value"),
    [("type", "log"), ("type", "LLM"), ("event", "stop"), ("event", "update "), ("runId", "")],
)
def test_unknown_type_event_or_id_is_rejected(field: str, value: str) -> None:
    raw = build("start", "chain", RID)
    raw[field] = value
    with pytest.raises(EventError):
        to_wire(raw, ENCODER)


def test_a_rejected_event_never_reaches_the_caller(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    before = lunatrace.stats()["internal_errors"]
    rid = tracer.start_run("log", "old-style", None)  # a type the server no longer has
    assert is_uuid(rid)
    assert tracer.end_run(rid, "x") is False
    assert tracer.start_run("chain", "bad id", None, run_id="") == ""
    assert memory_sink.events == []
    assert (
        lunatrace.stats()["internal_errors"] == before + 1
    )  # the unknown type; the empty id is refused at once


def test_metadata_is_flattened_to_what_the_server_keeps() -> None:
    metadata = {
        "n": 1,
        "f": 0.5,
        "ok": True,
        "s": "x",
        "scalars": [1, "a", False],
        "nested": {"b": {"c": 1}},
        "objects": [{"a": 1}],
        "none": None,
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
    }
    wire = to_wire(build("end", "chain", RID, metadata=metadata), ENCODER)
    assert wire["metadata"] == {
        "n": 1,
        "f": 0.5,
        "ok": True,
        "s": "x",
        "scalars": [1, "a", False],
        "nested": '{"b":{"c":1}}',
        "objects": '[{"a":1}]',
        "when": "2026-01-02T03:04:05Z",
    }


@pytest.mark.parametrize(
    "metadata",
    [
        {"ratio": 1e-05, "n": 2, "s": "é"},
        {"ratios": [0.5, 2e-09], "flag": False},
        {"nested": {"tiny": 3e-07}, "step": 1},
        {"when": dt.date(2026, 1, 2), "s": "x"},
    ],
    ids=["tiny-float", "tiny-float-in-a-list", "nested", "converted"],
)
def test_metadata_and_usage_are_written_as_the_standard_encoder_writes_them(metadata: dict[str, Any]) -> None:
    """Their text comes from a faster encoder where it writes the same: a tiny float is
    the one value it would write otherwise (``0.00001``, not ``1e-05``)."""
    raw = build("end", "llm", RID, metadata=metadata, tokens_usage={"prompt": 7, "completion": 3})
    text = events.wire_json(raw, ENCODER)
    assert text is not None
    wire = json.loads(text)
    assert f',"metadata":{json.dumps(wire["metadata"], separators=(",", ":"), ensure_ascii=False)}' in text
    assert ',"tokensUsage":{"prompt":7,"completion":3}' in text


def test_tokens_usage_keeps_only_non_negative_ints() -> None:
    usage = {"prompt": "12", "completion": -1, "promptCached": True, "total": 99}
    wire = to_wire(build("end", "llm", RID, tokens_usage=usage), ENCODER)
    assert wire["tokensUsage"] == {"prompt": 12}


def test_user_id_is_always_a_string() -> None:
    wire = to_wire(build("start", "chain", RID, user_id=1234), ENCODER)
    assert wire["userId"] == "1234"


def test_timestamp_format() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000Z"
    assert format_timestamp(1_767_225_600_123) == "2026-01-01T00:00:00.123Z"
    assert format_timestamp(1_767_225_599_999) == "2025-12-31T23:59:59.999Z"


@given(st.lists(st.integers(min_value=0, max_value=4_102_444_800_000), min_size=1, max_size=30))
def test_timestamps_reused_from_the_last_millisecond_and_second_are_exact(readings: list[int]) -> None:
    # Bursts repeat a millisecond or a second; a reading back in time must not reuse either.
    for ms in [x for reading in readings for x in (reading, reading, reading + 1, reading - 1000)]:
        if ms >= 0:
            expected = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            assert format_timestamp(ms) == f"{expected}.{ms % 1000:03d}Z"


def test_a_run_id_found_canonical_once_is_still_refused_as_anything_else() -> None:
    encoder = FieldEncoder(4_096)
    run_id = str(uuid.uuid4())
    for _ in range(2):  # the second time from the ids lately found canonical
        event = build("start", "chain", run_id, parent_run_id=run_id.upper(), name="x")
        event[events.TIMESTAMP_KEY] = 0
        wire = to_wire(event, encoder)
        assert wire is not None and wire["runId"] == run_id and wire["parentRunId"] == run_id


def test_clock_is_anchored_to_the_wall_clock_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = MonotonicClock()
    first = clock.ms_at(time.perf_counter_ns())
    assert abs(first - time.time() * 1000) < 1000
    monkeypatch.setattr(time, "time_ns", lambda: 0)  # the wall clock steps back to 1970
    assert clock.ms_at(time.perf_counter_ns()) >= first


def test_clock_never_goes_below_the_last_time_it_gave() -> None:
    clock = MonotonicClock(anchor_ns=0)
    readings = [5, 3, 9, 9, 2, 12]
    assert [clock.ms_at(ms * 1_000_000) for ms in readings] == [5, 5, 9, 9, 9, 12]
    assert [clock.ms_after_last(ms * 1_000_000) for ms in (1, 20)] == [13, 20]


def test_thread_messages_back_to_back_get_distinct_milliseconds(memory_sink: MemorySink) -> None:
    # The server finds a thread's open exchange as its latest-created run: two exchanges
    # opened in the same millisecond would make it append to the wrong one.
    thread = lunatrace.open_thread()
    for i in range(50):
        thread.track_message("user" if i % 2 == 0 else "assistant", f"m{i}")
    lunatrace.get_tracer().start_run("chain", "after", None)
    stamps = [e["timestamp"] for e in memory_sink.events]
    assert stamps[:50] == sorted(set(stamps[:50])) and len(set(stamps[:50])) == 50
    assert stamps[50] >= stamps[49]  # the clock moved with them: nothing later is stamped earlier


def test_runtime_names_the_sdk_and_version() -> None:
    wire = to_wire(build("start", "chain", RID), ENCODER)
    assert wire["runtime"] == f"lunatrace-py/{lunatrace.__version__}"


# --- arbitrary payloads -----------------------------------------------------------


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.binary(max_size=30),
    st.datetimes(),
    st.uuids(),
    st.builds(Unprintable),
)
_payload = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), inner, max_size=4),
        st.tuples(inner, inner),
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event=st.sampled_from(["start", "end", "error", "feedback", "chat", "update", "custom-event"]),
    run_type=st.sampled_from(sorted(RUN_TYPES)),
    run_id=st.uuids(),
    parent=st.one_of(st.none(), st.uuids()),
    fields=st.fixed_dictionaries(
        {},
        optional={
            "name": _payload,
            "input": _payload,
            "output": _payload,
            "params": _payload,
            "tags": st.lists(_payload, max_size=4),
            "metadata": st.dictionaries(st.text(max_size=10), _payload, max_size=5),
            "tokens_usage": st.dictionaries(
                st.sampled_from(["prompt", "completion", "promptCached"]),
                st.one_of(_payload, st.sampled_from([float("inf"), float("nan"), -3, "7"])),
                max_size=3,
            ),
            "user_id": _payload.filter(lambda v: v is not None),
            "user_props": _payload,
            "message": _payload,
            "thread_tags": st.lists(st.text(max_size=5), max_size=3),
            "template_version_id": st.one_of(st.integers(min_value=1), _payload),
        },
    ),
    ts=st.integers(min_value=0, max_value=4_102_444_800_000),
)
def test_any_payload_makes_a_valid_event(
    event: str,
    run_type: str,
    run_id: uuid.UUID,
    parent: uuid.UUID | None,
    fields: dict[str, Any],
    ts: int,
) -> None:
    raw = build(event, run_type, str(run_id), parent_run_id=parent, **fields)
    raw[events.TIMESTAMP_KEY] = ts
    encoded = events.wire_event(raw, FieldEncoder(4_096))
    assert encoded is not None
    text, header = encoded
    wire = json.loads(text)
    assert_wire_event(wire)
    # Delivery orders events by the header the encoder hands it: it must say what the JSON says.
    assert header == (wire["type"], wire["event"], wire["runId"], wire.get("parentRunId"))
    assert header == event_header(text)
    assert wire["runId"] == str(run_id)
    assert wire["timestamp"] == format_timestamp(ts)
    for key in ("input", "output", "params", "userProps", "message"):
        if key in wire:
            assert len(json.dumps(wire[key], separators=(",", ":"), ensure_ascii=False).encode()) <= 4_096


def test_an_exception_with_a_broken_str_still_ends_its_run(memory_sink: MemorySink) -> None:
    class Opaque(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    tracer = lunatrace.get_tracer()
    rid = tracer.start_run("tool", "t", None)
    assert tracer.error_run(rid, Opaque())
    error = one(memory_sink, "error", rid)
    assert error["error"]["message"] == "Opaque"
    assert "Opaque" in error["error"]["stack"]
    bare = events.error_payload(ValueError())
    assert bare["message"] == "ValueError" and bare["stack"].startswith("ValueError")


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        (12, 12),
        ("34", 34),
        ("v2", None),
        (1.5, None),
        (True, None),
        ("²", None),
        (2**70, None),
        ("9" * 5_000, None),
    ],
)
def test_template_version_id_is_an_int_or_left_out(value: Any, sent: int | None) -> None:
    wire = to_wire(build("start", "llm", RID, name="gpt-4", template_version_id=value), ENCODER)
    assert wire.get("templateVersionId") == sent
    assert wire["name"] == "gpt-4"  # the event itself is kept


# --- every field is capped ------------------------------------------------------------------

HUGE = "n" * 15_000_000  # a 15 MB run name went on the wire as a 15 MB event


def field_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def test_every_field_of_an_event_is_capped() -> None:
    raw = build(
        "start",
        "chain",
        RID,
        name=HUGE,
        tags=[HUGE, "short", HUGE + "x"],
        thread_tags=[HUGE],
        user_id=HUGE,
        runtime=HUGE,
        metadata={HUGE: HUGE, "kept": "yes"},
        extra={"anything": HUGE},
    )
    wire = to_wire(raw, FieldEncoder(4_096))
    assert wire["extra"] == {"anything": wire["extra"]["anything"]}  # an unknown field is sent as given
    for key in ("name", "tags", "threadTags", "userId", "runtime", "metadata", "extra"):
        assert field_bytes(wire[key]) <= 4_096 + 64, key  # metadata: its "metadata." renames
    assert wire["name"].startswith("nnn") and "…[lunatrace: truncated " in wire["name"]
    assert wire["tags"][1] == "short" and len(wire["tags"]) == 3  # each tag cut, still distinct
    assert all(isinstance(tag, str) and "…[lunatrace: truncated " in tag for tag in wire["tags"][::2])
    assert len(events.wire_json(raw, FieldEncoder(4_096)) or "") < 10 * 4_096


def test_tags_past_the_cap_are_counted_not_sent() -> None:
    tags = [f"tag-{i:04d}-" + "t" * 100 for i in range(5_000)]
    wire = to_wire(build("start", "chain", RID, tags=tags), FieldEncoder(4_096))
    kept = wire["tags"]
    assert field_bytes(kept) <= 4_096 and kept[:-1] == tags[: len(kept) - 1]
    assert kept[-1] == f"<{5_000 - (len(kept) - 1)} more items>"
    assert to_wire(build("start", "chain", RID, tags=["a", "a", None, "b"]), ENCODER)["tags"] == ["a", "b"]


def test_a_huge_run_name_tag_and_user_through_the_tracer(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    with lunatrace.identify(HUGE), lunatrace.tags([HUGE]):
        rid = tracer.start_run("tool", HUGE, {"q": "x"}, tags=["mine"], metadata={"note": HUGE})
    tracer.end_run(rid, "done")
    thread = lunatrace.open_thread(tags=[HUGE], user_id=HUGE)
    thread.track_message("user", "hi")
    cap = lunatrace.get_tracer().config.max_field_bytes
    for event in memory_sink.events:
        assert len(json.dumps(event)) < 6 * cap, event["event"]
    start = one(memory_sink, "start", rid)
    assert start["name"].startswith("nnn") and start["tags"][1] == "mine"
    assert "…[lunatrace: truncated " in start["userId"]


def test_a_refused_value_is_named_briefly_in_the_error() -> None:
    for field in ("type", "event", "runId"):
        raw = build("start", "chain", RID)
        raw[field] = "x" * 1_000_000 if field != "runId" else Unprintable()
        with pytest.raises(EventError) as refused:
            to_wire(raw, ENCODER)
        assert len(str(refused.value)) < 200
