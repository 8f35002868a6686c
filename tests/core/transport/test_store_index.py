"""The store's schema version 1 on real SQLite files: what each trace was (previews, token
split, cost), full-text search and the time and error filters, and the in-place migration
of a store an older release wrote, with several processes at it."""

from __future__ import annotations

import multiprocessing
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lunatrace.core.transport import store as store_module
from lunatrace.core.transport.store import SCHEMA_VERSION, EventStore, StoreError, open_existing
from tests.support.previous_store import BASE_MS, as_previous_release, previous_release_append


def _ts(ms: int) -> str:
    from lunatrace.core.timestamps import format_timestamp

    return format_timestamp(BASE_MS + ms)


def _id() -> str:
    return str(uuid.uuid4())


def qa_trace(
    question: str, answer: str, start_ms: int = 0, model: str = "gpt-4o-mini"
) -> list[dict[str, Any]]:
    """A chain around one llm call, as the wire has it."""
    root, llm = _id(), _id()
    prompt = [{"role": "user", "content": question}]
    usage = {"prompt": 1200, "completion": 300}
    return [
        {"type": "chain", "event": "start", "runId": root, "timestamp": _ts(start_ms),
         "name": "RunnableSequence", "input": {"question": question}, "tags": ["support"]},
        {"type": "llm", "event": "start", "runId": llm, "parentRunId": root, "timestamp": _ts(start_ms + 5),
         "name": model, "input": prompt},
        {"type": "llm", "event": "end", "runId": llm, "timestamp": _ts(start_ms + 805),
         "output": {"role": "assistant", "content": answer}, "tokensUsage": usage},
        {"type": "chain", "event": "end", "runId": root, "timestamp": _ts(start_ms + 900), "output": answer},
    ]  # fmt: skip


def failed_trace(message: str, start_ms: int = 0) -> list[dict[str, Any]]:
    root = _id()
    return [
        {"type": "chain", "event": "start", "runId": root, "timestamp": _ts(start_ms), "name": "job",
         "input": "nightly export", "metadata": {"team": "billing"}},
        {"type": "chain", "event": "error", "runId": root, "timestamp": _ts(start_ms + 40),
         "error": {"message": message, "stack": "Traceback..."}},
    ]  # fmt: skip


def test_each_trace_says_what_it_was_tokens_split_and_an_estimated_cost(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    events = qa_trace("What is the refund policy?", "Refunds within 30 days.")
    store.append(events[:2], delivered=False, local=True)  # the llm's start and end in two batches
    store.append(events[2:], delivered=False, local=True)
    [summary] = store.list_traces()
    assert summary.input_preview == "What is the refund policy?"
    assert summary.output_preview == "Refunds within 30 days."
    assert (summary.prompt_tokens, summary.completion_tokens, summary.tokens) == (1200, 300, 1500)
    # gpt-4o-mini in Lunary's table: 0.15 and 0.60 USD per million prompt and completion tokens
    assert summary.cost == pytest.approx(0.00036) and summary.cost_estimated


def test_a_cost_the_application_set_wins_and_an_unknown_model_has_none(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    priced = qa_trace("q", "a")
    priced[2]["metadata"] = {"cost": 0.25}
    unknown = qa_trace("q", "a", 2000, model="house-model-7")
    store.append(priced + unknown + failed_trace("boom", 4000), delivered=False, local=True)
    failed, unknown_summary, priced_summary = store.list_traces()
    assert (priced_summary.cost, priced_summary.cost_estimated) == (0.25, False)
    assert unknown_summary.cost is None and not unknown_summary.cost_estimated  # not $0
    assert failed.cost is None and failed.output_preview == "boom"


def test_search_finds_words_in_names_inputs_outputs_errors_tags_and_metadata(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    refund = qa_trace("What is the refund policy?", "Refunds within 30 days.", 0)
    password = qa_trace("How do I reset my password?", "Use the sign-in page.", 1000)
    failed = failed_trace("Disk quota exceeded on volume Élan", 2000)
    store.append(refund + password + failed, delivered=False, local=True)
    traces = {"refund": refund, "password": password, "failed": failed}
    ids = {name: trace[0]["runId"] for name, trace in traces.items()}

    def found(text: str) -> set[str]:
        return {s.trace_id for s in store.list_traces(search=text)}

    assert store.search_mode == "fts5"
    assert found("refund") == {ids["refund"]}  # a word of the input, and a prefix of "Refunds"
    assert found("REFUNDS") == {ids["refund"]}  # any case
    assert found('"sign-in page"') == {ids["password"]}  # a phrase, in an llm's output
    assert found("quota") == {ids["failed"]}  # an error message
    assert found("elan") == {ids["failed"]}  # accents folded
    assert found("billing") == found("team") == {ids["failed"]}  # metadata values and keys
    assert found("support") == {ids["refund"], ids["password"]}  # a tag
    assert found("gpt-4o-mini") == {ids["refund"], ids["password"]}  # a child run's name
    assert found("refund password") == set()  # every word, in the same trace
    assert found("RunnableSequence refund") == {ids["refund"]}
    assert found('refund " -* ^ :') == {ids["refund"]}  # FTS5's operators and quotes are only text
    assert store.count_traces(search="support") == 2 and store.count_traces(search="nothing-like-it") == 0


def test_time_range_and_error_filters(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    events = qa_trace("a", "b", 0) + failed_trace("x", 60_000) + qa_trace("c", "d", 120_000)
    store.append(events, delivered=False)
    names = lambda **f: [s.name for s in store.list_traces(**f)]  # noqa: E731
    assert names(since_ms=BASE_MS + 60_000) == ["RunnableSequence", "job"]
    assert names(until_ms=BASE_MS + 60_000) == ["RunnableSequence"]  # until is exclusive
    assert names(since_ms=BASE_MS + 1, until_ms=BASE_MS + 120_000) == ["job"]
    assert names(errors=True) == ["job"] and store.count_traces(errors=True, search="nightly") == 1
    with pytest.raises(TypeError, match="unknown trace filter"):
        store.list_traces(colour="red")


WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
FIELDS = ("name", "input", "output", "error", "tags", "metadata")


def _trace_with(words: dict[str, list[str]], n: int) -> list[dict[str, Any]]:
    root = f"trace-{n:04d}"
    start: dict[str, Any] = {"type": "chain", "event": "start", "runId": root, "timestamp": _ts(n)}
    start["name"] = " ".join(words.get("name", [])) or "run"
    start["input"] = {"text": " ".join(words.get("input", []))}
    start["tags"] = words.get("tags", [])
    start["metadata"] = {"note": " ".join(words.get("metadata", []))}
    if words.get("error"):
        end = {"event": "error", "error": {"message": " ".join(words["error"])}}
    else:
        end = {"event": "end", "output": " ".join(words.get("output", []))}
    return [start, {"type": "chain", "runId": root, "timestamp": _ts(n + 1), **end}]


def _written(words: dict[str, list[str]]) -> set[str]:
    """The fields :func:`_trace_with` writes: a run that fails has an error, not an output."""
    return set(FIELDS) - ({"output"} if words.get("error") else {"error"})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    traces=st.lists(
        st.dictionaries(st.sampled_from(FIELDS), st.lists(st.sampled_from(WORDS), max_size=3), max_size=4),
        min_size=1,
        max_size=8,
    ),
    query=st.lists(st.sampled_from(WORDS), min_size=1, max_size=2),
)
def test_search_returns_exactly_the_traces_holding_every_word(
    tmp_path_factory: pytest.TempPathFactory, traces: list[dict[str, list[str]]], query: list[str]
) -> None:
    store = EventStore(tmp_path_factory.mktemp("search") / "events.db")
    for n, words in enumerate(traces):
        store.append(_trace_with(words, n * 10), delivered=False)
    expected = {
        f"trace-{n * 10:04d}"
        for n, words in enumerate(traces)
        if all(any(q in ws for key, ws in words.items() if key in _written(words)) for q in query)
    }
    assert {s.trace_id for s in store.list_traces(limit=100, search=" ".join(query))} == expected
    assert store.count_traces(search=" ".join(query)) == len(expected)
    store.close()


def test_a_store_the_previous_release_wrote_is_migrated_in_place_and_nothing_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = EventStore(path)
    events = qa_trace("What is the refund policy?", "Refunds within 30 days.") + failed_trace("boom", 5000)
    store.append(events, delivered=False, local=True)
    before = [(s.trace_id, s.name, s.status, s.tokens, s.errors, s.started_at) for s in store.list_traces()]
    store.close()
    as_previous_release(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
        assert "cost" not in {row[1] for row in db.execute("PRAGMA table_info(traces)")}

    migrated = open_existing(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT COUNT(*) FROM events WHERE indexed = 0").fetchone()[0] == 0
    after = migrated.list_traces()
    assert [(s.trace_id, s.name, s.status, s.tokens, s.errors, s.started_at) for s in after] == before
    assert migrated.trace_events(events[0]["runId"]) == events[:4]  # every event, as it was
    assert migrated.count_pending() == len(events)  # still waiting for `lunatrace push`
    refund = after[1]
    assert (refund.input_preview, refund.prompt_tokens, refund.completion_tokens) == (
        "What is the refund policy?",
        1200,
        300,
    )
    assert refund.cost == pytest.approx(0.00036) and refund.cost_estimated
    assert [s.trace_id for s in migrated.list_traces(search="refund")] == [refund.trace_id]
    migrated.close()

    again = open_existing(path)  # a second open finds nothing left to do, and counts nothing twice
    assert again.index_pending() == 0
    assert again.list_traces()[1].prompt_tokens == 1200
    again.close()


def test_events_an_older_release_writes_into_a_migrated_store_are_indexed_on_the_next_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.db"
    EventStore(path).close()
    late = {"type": "chain", "event": "start", "runId": _id(), "name": "late", "input": "zebra crossing"}
    previous_release_append(path, late)
    store = open_existing(path)
    assert [s.name for s in store.list_traces(search="zebra")] == ["late"]
    assert store.list_traces()[0].input_preview == "zebra crossing"


def _open_and_index(path: str, barrier: Any) -> None:
    barrier.wait()
    open_existing(Path(path)).close()


def test_processes_migrating_the_same_store_at_once_count_everything_once(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = EventStore(path)
    for n in range(600):  # 2,400 events: two chunks of the migration
        store.append(qa_trace(f"question {n}", "answer", n * 1000), delivered=False)
    store.close()
    as_previous_release(path)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    workers = [ctx.Process(target=_open_and_index, args=(str(path), barrier)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    store = EventStore(path)
    summaries = store.list_traces(limit=1000)
    assert len(summaries) == 600
    assert {(s.prompt_tokens, s.completion_tokens) for s in summaries} == {(1200, 300)}
    assert sum(s.cost or 0 for s in summaries) == pytest.approx(600 * 0.00036)
    assert store.count_traces(search="question") == 600


def test_without_fts5_search_scans_and_still_finds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A Python whose SQLite was built without FTS5 answers the module probe with an error.
    monkeypatch.setattr(store_module, "fts5_available", lambda db: False)
    store = EventStore(tmp_path / "events.db")
    assert store.search_mode == "like"
    store.append(qa_trace("What is the 100% refund_policy?", "ok"), delivered=False)
    assert store.count_traces(search="100%") == 1 and store.count_traces(search="refund_policy") == 1
    assert store.count_traces(search="10_%") == 0  # LIKE's wildcards are only text


def test_a_full_text_store_opened_without_fts5_still_takes_events_and_says_why_it_cannot_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.db"
    EventStore(path).close()  # made with FTS5
    monkeypatch.setattr(store_module, "fts5_available", lambda db: False)
    store = EventStore(path)
    assert store.search_mode is None
    store.append(qa_trace("q", "a"), delivered=False)  # an append never touches the index
    assert store.count_traces() == 1
    with pytest.raises(StoreError, match="needs SQLite's FTS5 module"):
        store.list_traces(search="q")


def test_both_ways_of_listing_a_search_give_the_same_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EventStore(tmp_path / "events.db")
    for n in range(60):
        store.append(qa_trace(f"refund {n}" if n % 3 else f"password {n}", "ok", n * 1000), delivered=False)

    def pages() -> list[list[str]]:
        store._matches.clear()
        return [
            [s.trace_id for s in store.list_traces(limit=7, offset=o, search="refund")] for o in (0, 7, 35)
        ]

    looked_up = pages()  # 40 matches: each looked up, then sorted
    monkeypatch.setattr(store_module, "SCAN_ABOVE", 10)
    assert pages() == looked_up  # walked newest first instead
    assert [len(p) for p in looked_up] == [7, 7, 5]


def test_a_thread_reads_as_its_latest_exchange_and_its_messages_are_searched(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    thread = "thread-1"

    def message(n: int, role: str, content: str) -> dict[str, Any]:
        return {"type": "thread", "event": "chat", "runId": f"m{n}", "parentRunId": thread,
                "timestamp": _ts(n * 100), "message": {"role": role, "content": content}}  # fmt: skip

    store.append(
        [message(1, "user", "Hi, my parcel is late"), message(2, "assistant", "Sorry! Which order?")],
        delivered=False,
    )
    store.append(
        [message(3, "user", "Order 1234"), message(4, "assistant", "It ships tomorrow.")], delivered=False
    )
    [summary] = store.list_traces()
    assert (summary.trace_id, summary.name) == (thread, "thread")
    assert (summary.input_preview, summary.output_preview) == ("Order 1234", "It ships tomorrow.")
    assert store.count_traces(search="parcel") == store.count_traces(search="ships tomorrow") == 1


def test_a_long_migration_says_why_the_command_waits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.db"
    store = EventStore(path)
    store.append([e for n in range(10) for e in qa_trace(f"q{n}", "a", n * 1000)], delivered=False)
    store.close()
    as_previous_release(path)
    with caplog.at_level("WARNING", logger="lunatrace"):
        EventStore(path).index_pending(chunk=8)
    assert "indexing 40 event(s)" in caplog.text and "written by an older release" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="lunatrace"):
        assert open_existing(path).index_pending() == 0
    assert caplog.text == ""
