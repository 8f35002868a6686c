"""The fake Lunary server agrees with the real one: the same raw HTTP requests go to both,
and their answers and what they stored must match.

The fast tests trust the fake (tests/support/fake_lunary.py) to behave like the server; this
is where that trust is checked, one protocol point per case (docs/PROTOCOL.md). Each case
gets a project of its own on the real server and a fresh fake, and fresh run ids, since run
ids are unique across the whole real server. Left out of the comparison, as the fake does not
mirror them: the JSON parser's wording, costs, the rate limiter's running counts, and the
times of rows the server stamps itself.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
import requests

from tests.support.fake_lunary import INGEST_PATH, ORPHAN_DELAY, ROW_FIELDS, FakeLunary
from tests.support.real_lunary import Project, RealLunary

DAY = "2026-01-01"  # every case's clock; a stored time on another day is the time of insertion
SLOW = ORPHAN_DELAY * 0.4  # an answer this late slept for a missing parent (or waited for one)
STAGGER = 0.5  # seconds between the requests of a case sent in parallel
# Columns both sides have (cost needs the server's price table, so it is left out).
COMPARED = tuple(
    name
    for name in ROW_FIELDS
    if name not in ("cached_prompt_tokens", "cost", "feedback", "runtime", "template_version_id", "user")
)


class Ids(dict[str, str]):
    """Fresh run ids by name, made on first use."""

    def __missing__(self, name: str) -> str:
        self[name] = value = str(uuid.uuid4())
        return value


def at(second: float) -> str:
    """A timestamp on the cases' clock, ``second`` seconds into the day."""
    return f"{DAY}T00:00:{second:06.3f}Z"


def ev(event: str, run_type: str, run_id: str, second: float = 0, **fields: Any) -> dict[str, Any]:
    """An event as the protocol describes it; ``fields`` add to it or replace its defaults."""
    return {"type": run_type, "event": event, "runId": run_id, "timestamp": at(second), **fields}


def batch(*events: Any) -> dict[str, Any]:
    return {"events": list(events)}


@dataclass(frozen=True)
class Send:
    """One raw request: a body (JSON-encoded unless bytes), how it authenticates, where."""

    body: Any = field(default_factory=lambda: batch())
    auth: str = "public"  # see _headers
    path: str = INGEST_PATH
    content_type: str = "application/json"


@dataclass(frozen=True)
class Case:
    """Requests sent in turn (or ``parallel``: each ``STAGGER`` seconds after the previous one,
    without waiting for its answer). ``status`` is what the real server answers the last one and
    ``slow`` which answers it delays, so that a case cannot pass by both servers failing it the
    same unintended way."""

    name: str
    status: int
    sends: Callable[[Ids], list[Send]]
    slow: tuple[bool, ...] = ()
    parallel: bool = False


def posts(*bodies: Any) -> Callable[[Ids], list[Send]]:
    """Requests that differ only by body (``bodies`` are functions of the case's ids)."""
    return lambda ids: [Send(body(ids)) for body in bodies]


def chat(ids: Ids, thread: str, message_id: str, role: str, second: float, **fields: Any) -> dict[str, Any]:
    """A thread message, as the protocol describes it (``fields`` may replace the message)."""
    return {
        "type": "thread",
        "event": "chat",
        "runId": ids[message_id],
        "parentRunId": ids[thread],
        "timestamp": at(second),
        "message": {"role": role, "content": f"{role} at {second}"},
        **fields,
    }


CASES = [
    # --- auth and statuses ---------------------------------------------------------------
    Case("empty-batch", 200, lambda ids: [Send()]),
    Case("no-key", 402, lambda ids: [Send(auth="none")]),
    Case("no-key-and-malformed-json", 400, lambda ids: [Send(b"{not json", auth="none")]),
    Case("unknown-key", 401, lambda ids: [Send(auth="unknown")]),
    Case("token-not-uuid", 401, lambda ids: [Send(auth="not-a-uuid")]),
    Case("x-api-key", 200, lambda ids: [Send(auth="x-api-key")]),
    Case("x-api-key-not-uuid", 404, lambda ids: [Send(auth="x-api-key-not-a-uuid")]),
    Case("any-scheme", 200, lambda ids: [Send(auth="basic")]),
    Case("upper-case-key", 200, lambda ids: [Send(auth="upper-case")]),
    Case("trailing-slash-public-key", 401, lambda ids: [Send(path=INGEST_PATH + "/")]),
    Case("trailing-slash-private-key", 200, lambda ids: [Send(path=INGEST_PATH + "/", auth="private")]),
    Case("other-route-private-key", 404, lambda ids: [Send(path="/v1/nowhere", auth="private")]),
    Case("query-string", 200, lambda ids: [Send(path=INGEST_PATH + "?x=1")]),
    # --- bodies --------------------------------------------------------------------------
    Case("malformed-json", 400, lambda ids: [Send(b'{"events": [}')]),
    Case("json-not-an-object", 400, lambda ids: [Send(b'"events"')]),
    Case("proto-key", 400, lambda ids: [Send(b'{"events": [], "__proto__": {}}')]),
    Case("empty-body", 500, lambda ids: [Send(b"")]),
    Case("bare-array", 500, lambda ids: [Send([])]),
    Case("no-events-key", 500, lambda ids: [Send({"nothing": 1})]),
    Case("events-null", 500, lambda ids: [Send({"events": None})]),
    Case("not-json-content-type", 500, lambda ids: [Send(batch(), content_type="text/plain")]),
    Case("null-element-alone", 500, posts(lambda ids: batch(None))),
    Case("null-element-first", 500, posts(lambda ids: batch(None, ev("start", "chain", ids["a"])))),
    Case("null-element-last", 500, posts(lambda ids: batch(ev("start", "chain", ids["a"]), None))),
    Case("single-object", 200, posts(lambda ids: {"events": ev("start", "agent", ids["a"], name="solo")})),
    Case("element-in-a-list", 200, posts(lambda ids: batch([ev("start", "tool", ids["a"], name="wrapped")]))),
    Case("scalar-elements", 200, posts(lambda ids: batch(5, "text", {}))),
    # --- events --------------------------------------------------------------------------
    Case(
        "sorted-by-timestamp",
        200,
        posts(
            lambda ids: batch(
                ev("end", "chain", ids["root"], 3),
                ev("start", "tool", ids["child"], 1, parentRunId=ids["root"]),
                ev("start", "chain", ids["root"], 0, name="root"),
            )
        ),
    ),
    Case(
        "string-ids-are-hashed",
        200,
        posts(
            lambda ids: batch(
                ev("start", "chain", f"my-root-{ids['a']}", 0),
                ev("start", "tool", f"my-child-{ids['a']}", 1, parentRunId=f"my-root-{ids['a']}"),
                ev("end", "tool", f"my-child-{ids['a']}", 2, output="done"),
            )
        ),
    ),
    Case(
        "cleaned-and-camel-cased",
        200,
        posts(
            lambda ids: batch(
                ev(
                    "start",
                    "chain",
                    ids["a"],
                    0,
                    name="models/gemini-pro",
                    tags="one-tag",
                    metadata={"n": 1, "gone": None, "nested": {"x": 1}, "flat": [1, "2", True], "a_b": "s"},
                    input={"tool_calls": [{"call_id": 1, "x-y": None}]},
                    params={"max_tokens": 3},
                    runtime="test",
                ),
                {"type": "chain", "event": "end", "run_id": ids["a"], "timestamp": at(1), "output": True},
                ev("end", "chain", ids["a"], 2, metadata={"n": 2, "more": "m"}),
            )
        ),
    ),
    Case(
        "metadata-read-as-run-fields",
        200,
        posts(
            lambda ids: batch(
                ev("start", "chain", ids["tags"], 0, metadata={"tags": ["from-metadata", 7]}),
                ev("start", "chain", ids["own-tags"], 0, tags=["own"], metadata={"tags": "ignored"}),
                ev("start", "chain", ids["bad-tags"], 0, metadata={"tags": "not-an-array"}),
                ev("start", "chain", ids["number-tags"], 0, metadata={"tags": 3}),
                ev("start", "chain", ids["template"], 0, metadata={"templateId": "abc"}),
                ev("start", "chain", ids["snake-template"], 0, metadata={"template_id": 12345}),
                ev("start", "chain", ids["bool-template"], 0, metadata={"templateVersionId": True}),
                ev("start", "chain", ids["zero-template"], 0, templateVersionId=0),
                ev("start", "chain", ids["end-ignores"], 1),
                ev("end", "chain", ids["end-ignores"], 2, metadata={"templateId": "abc"}),
            )
        ),
    ),
    Case(
        "duplicate-start",
        200,
        posts(
            lambda ids: batch(ev("start", "chain", ids["a"], 0, name="first")),
            lambda ids: batch(ev("start", "chain", ids["a"], 1, name="second")),
            lambda ids: batch(ev("start", "chain", ids["a"].upper(), 2, name="upper")),
        ),
    ),
    Case(
        "refused-starts",
        200,
        posts(
            lambda ids: batch(
                {"event": "start", "runId": ids["untyped"], "timestamp": at(0)},
                ev("start", "chain", "x" * 36, 0),
                ev("start", "chain", "", 0),
                {"type": "chain", "event": "start", "timestamp": at(0)},
                ev("start", "chain", ids["nul"], 0, input="a\u0000b"),
                ev("start", "chain", ids["bool-input"], 0, input=True),
                ev("start", "log", ids["log"], 0),
                ev("start", "chain", ids["app"], 0, appId="not-a-key"),
            )
        ),
    ),
    Case(
        "a-whole-trace",
        200,
        posts(
            lambda ids: batch(
                ev(
                    "start", "agent", ids["agent"], 0, name="agent", input="q", userId="u", userProps={"p": 1}
                ),
                ev(
                    "start",
                    "llm",
                    ids["llm"],
                    0.5,
                    parentRunId=ids["agent"],
                    name="gpt-4o",
                    input=[{"role": "user", "content": "hi"}],
                    params={"temperature": 0},
                ),
                ev(
                    "end",
                    "llm",
                    ids["llm"],
                    1,
                    output={"role": "assistant", "content": "yo"},
                    tokensUsage={"prompt": 3, "completion": 2},
                ),
                ev("update", "llm", ids["llm"], 1.5, metadata={"m": 1}),
                ev("error", "agent", ids["agent"], 2, error={"message": "boom", "stack": "s"}),
                ev("feedback", "agent", ids["agent"], 3, feedback={"thumb": "up"}),
                ev("feedback", "agent", ids["agent"], 4, feedback={"comment": "nice"}),
                ev("whatever", "agent", ids["agent"], 5),
            )
        ),
    ),
    Case(
        "events-for-unknown-runs",
        200,
        posts(
            lambda ids: batch(
                ev("end", "chain", ids["a"], 0, output="x"),
                ev("error", "tool", ids["b"], 0, error={"message": "m", "stack": ""}),
                ev("feedback", "chain", ids["c"], 0, feedback={"thumb": "down"}),
            )
        ),
    ),
    Case(
        "thread-exchanges-are-merged",
        200,
        posts(
            lambda ids: batch(chat(ids, "thread", "user-1", "user", 0, threadTags=["t"], userId="u9")),
            lambda ids: batch(ev("start", "agent", ids["work"], 0.5, parentRunId=ids["user-1"])),
            lambda ids: batch(chat(ids, "thread", "bot-1", "assistant", 1)),
            lambda ids: batch(ev("feedback", "thread", ids["user-1"], 1.5, feedback={"thumb": "down"})),
            lambda ids: batch(
                chat(ids, "thread", "user-2", "user", 2),
                chat(ids, "thread", "user-3", "user", 3),
                chat(ids, "thread", "bot-2", "assistant", 4, feedback={"thumb": "up"}),
                chat(
                    ids,
                    "thread",
                    "retry",
                    "user",
                    5,
                    message={"role": "user", "content": "again", "isRetry": True},
                ),
            ),
        ),
    ),
    Case(
        "custom-event",
        200,
        posts(
            lambda ids: batch(
                ev("custom-event", "custom-event", ids["e"], 0, parentRunId=ids["t"], name="click"),
                ev("custom-event", "custom-event", ids["f"], 0, name="no-thread"),
            )
        ),
    ),
    # One event only: the real server sleeps 5 s for it, and meanwhile answers another request.
    Case(
        "orphan-and-a-request-meanwhile",
        200,
        posts(
            lambda ids: batch(ev("start", "tool", ids["child"], 0, parentRunId=ids["gone"])),
            lambda ids: batch(ev("start", "chain", ids["other"], 1)),
        ),
        slow=(True, False),
        parallel=True,
    ),
]


@dataclass(frozen=True)
class Answer:
    """What one server answered, reduced to what the two must share: of the rate limiter's
    headers only their names (the real server counts every request of the session)."""

    status: int
    content_type: str
    rate_limit_headers: tuple[str, ...]
    body: Any
    slow: bool


def _headers(send: Send, project: Project, private_key: str) -> dict[str, str]:
    """The request headers for ``send.auth``."""
    bearer = {
        "public": project.key,
        "private": private_key,
        "unknown": str(uuid.uuid4()),
        "not-a-uuid": "not-a-uuid",
        "upper-case": project.key.upper(),
    }
    headers = {"Content-Type": send.content_type}
    if send.auth in bearer:
        headers["Authorization"] = f"Bearer {bearer[send.auth]}"
    elif send.auth == "basic":
        headers["Authorization"] = f"Basic {project.key}"
    elif send.auth.startswith("x-api-key"):
        headers["X-API-Key"] = project.key if send.auth == "x-api-key" else "not-a-uuid"
    return headers


def _comparable_body(raw: bytes) -> Any:
    """The body, parsed when it is JSON; the JSON parser's own words are not compared."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode()
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, str) and message.startswith("JSON Parse error:"):
        return {"message": "JSON Parse error: ..."}
    return body


def _send(url: str, send: Send, project: Project, private_key: str) -> Answer:
    data = send.body if isinstance(send.body, bytes) else json.dumps(send.body).encode()
    started = time.monotonic()
    reply = requests.post(
        url + send.path, data=data, headers=_headers(send, project, private_key), timeout=30
    )
    return Answer(
        status=reply.status_code,
        content_type=reply.headers.get("Content-Type", ""),
        rate_limit_headers=tuple(sorted(h for h in reply.headers if h.lower().startswith("rate-limit"))),
        body=_comparable_body(reply.content),
        slow=time.monotonic() - started >= SLOW,
    )


def _send_all(
    url: str, sends: list[Send], project: Project, private_key: str, *, parallel: bool
) -> list[Answer]:
    """The answers in request order; ``parallel`` sends overlap (a server that serialised its
    requests would then answer the later ones late)."""
    if not parallel:
        return [_send(url, send, project, private_key) for send in sends]
    with ThreadPoolExecutor(len(sends)) as pool:
        pending = []
        for send in sends:
            pending.append(pool.submit(_send, url, send, project, private_key))
            time.sleep(STAGGER)
        return [answer.result() for answer in pending]


def _moment(value: datetime | str | None) -> str | None:
    """A stored time in the protocol's format; one off the cases' clock is just "inserted"."""
    if isinstance(value, datetime):
        utc = value.astimezone(timezone.utc)
        value = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    if value is None or value.startswith(DAY):
        return value
    return "<time of insertion>"


def _real_rows(real_lunary: RealLunary, project: Project) -> dict[str, dict[str, Any]]:
    """The project's rows by id, the user as the id the application gave (as the fake keeps it)."""
    rows = {}
    for row in real_lunary.runs(project):
        row["user"] = real_lunary.external_user(row["external_user_id"])
        rows[row["id"]] = {name: row[name] for name in COMPARED}
    return _with_moments(rows)


def _fake_rows(fake: FakeLunary) -> dict[str, dict[str, Any]]:
    return _with_moments(
        {run_id: {name: row[name] for name in COMPARED} for run_id, row in fake.runs.items()}
    )


def _with_moments(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    for row in rows.values():
        row["created_at"], row["ended_at"] = _moment(row["created_at"]), _moment(row["ended_at"])
    return rows


def _private_key(real_lunary: RealLunary, project: Project) -> str:
    (row,) = real_lunary.query(
        "select api_key from api_key where project_id = %s and type = 'private'", project.project_id
    )
    return str(row["api_key"])


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_fake_answers_and_stores_like_the_real_server(case: Case, real_lunary: RealLunary) -> None:
    """Same answers (status, content type, body or per-event results, delay) and same stored
    rows on the columns both have."""
    project = real_lunary.new_project()
    private_key = _private_key(real_lunary, project)
    sends = case.sends(Ids())
    with FakeLunary(key=project.key) as fake, ThreadPoolExecutor(2) as pool:
        fake.private_key = private_key
        # Both at once: a case that makes the real server sleep costs its 5 s only once.
        on_fake = pool.submit(_send_all, fake.url, sends, project, private_key, parallel=case.parallel)
        on_real = pool.submit(_send_all, real_lunary.url, sends, project, private_key, parallel=case.parallel)
        fake_answers, real_answers = on_fake.result(), on_real.result()
        assert real_answers[-1].status == case.status
        assert tuple(answer.slow for answer in real_answers) == (case.slow or (False,) * len(sends))
        assert fake_answers == real_answers
        assert _fake_rows(fake) == _real_rows(real_lunary, project)
