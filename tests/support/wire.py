"""The Lunary ingestion wire contract, written out independently of lunatrace/core/events.py,
so a test checking events against it fails if the builder drifts from the protocol."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import lunatrace

RUN_TYPES = {"llm", "chain", "agent", "tool", "retriever", "embed", "chat", "thread", "custom-event"}
EVENTS = {"start", "end", "error", "feedback", "chat", "update", "custom-event"}
TOP_LEVEL_KEYS = {
    "type",
    "event",
    "runId",
    "parentRunId",
    "timestamp",
    "name",
    "input",
    "output",
    "params",
    "tags",
    "metadata",
    "tokensUsage",
    "error",
    "feedback",
    "userId",
    "userProps",
    "runtime",
    "message",
    "threadTags",
    "templateVersionId",
}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
CAMEL = re.compile(r"^[a-z][a-zA-Z]*$")
SCALAR = (str, int, float, bool)


def is_uuid(value: Any) -> bool:
    """A canonical (lower-case, hyphenated) UUID string."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def assert_wire_event(event: dict[str, Any]) -> None:
    """Fail with a precise message if ``event`` breaks the wire contract."""
    unknown = set(event) - TOP_LEVEL_KEYS
    assert not unknown, f"keys outside the protocol: {unknown}"
    for key, value in event.items():
        assert CAMEL.match(key), f"key {key!r} is not camelCase"
        assert value is not None, f"null field {key!r} would overwrite the stored value"
    assert event["type"] in RUN_TYPES, event["type"]
    assert event["event"] in EVENTS, event["event"]
    assert is_uuid(event["runId"]), event["runId"]
    if "parentRunId" in event:
        assert is_uuid(event["parentRunId"]), event["parentRunId"]
    assert TIMESTAMP.match(event["timestamp"]), event["timestamp"]
    assert event["runtime"] == f"lunatrace-py/{lunatrace.__version__}"
    if "userId" in event:
        assert isinstance(event["userId"], str)
    for key in ("tags", "threadTags"):
        if key in event:
            assert isinstance(event[key], list) and event[key]
            assert all(isinstance(tag, str) for tag in event[key])
    if "metadata" in event:
        assert isinstance(event["metadata"], dict)
        for key, value in event["metadata"].items():
            assert isinstance(key, str)
            assert isinstance(value, SCALAR) or (
                isinstance(value, list) and all(isinstance(v, SCALAR) for v in value)
            ), f"metadata {key!r} = {value!r} would be dropped by the server"
    if "tokensUsage" in event:
        usage = event["tokensUsage"]
        assert set(usage) <= {"prompt", "completion", "promptCached"}
        assert all(type(v) is int and v >= 0 for v in usage.values()), usage
    if "error" in event:
        assert set(event["error"]) == {"message", "stack"}
        assert all(isinstance(v, str) for v in event["error"].values())
    if "feedback" in event:
        assert event["feedback"].get("thumb") in (None, "up", "down")
    if "templateVersionId" in event:
        assert type(event["templateVersionId"]) is int
    json.dumps(event, allow_nan=False)
