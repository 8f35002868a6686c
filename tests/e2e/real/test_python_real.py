"""Plain Python tracing stored by the real Lunary server: decorated functions (sync, async,
failing), the user of ``identify``, llm token counts, and a conversation thread with its
messages, the work nested under them and feedback.

Each test reads the ``run`` rows the server wrote, so what it checks is what the Lunary
dashboard shows, including the server's own reshaping (thread messages merged into one
``chat`` run per exchange, children inheriting their parent's user).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

import lunatrace
from tests.e2e.real.stored import Row, assert_finished, current_run, only, row_shape, stored_runs, users_of
from tests.support.real_lunary import Project, RealLunary


def _ids(rows: list[Row]) -> dict[str, Row]:
    return {row["id"]: row for row in rows}


async def test_nested_sync_and_async_functions_are_stored_as_two_trees(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    """Nesting by the call stack and by asyncio tasks must survive the server's ordering:
    each run stored under the run that called it, with the id the function saw inside,
    and the ``identify()`` user (with its props) on every row."""
    seen: dict[str, str] = {}  # run name -> the id lunatrace gave it, seen from inside

    @lunatrace.trace(type="tool", name="search")
    def search(query: str) -> list[str]:
        seen["search"] = current_run()
        return ["doc 1", "doc 2"]

    @lunatrace.trace
    def summarize(question: str, docs: list[str]) -> str:
        seen["summarize"] = current_run()
        return f"{question}: {len(docs)} documents"

    @lunatrace.trace(type="agent", name="answer")
    def answer(question: str) -> str:
        seen["answer"] = current_run()
        return summarize(question, search(question))

    @lunatrace.trace(type="tool", name="fetch")
    async def fetch(page: int) -> str:
        await asyncio.sleep(0.02 * (3 - page))  # the second call finishes first
        seen[f"fetch-{page}"] = current_run()
        return f"page {page}"

    @lunatrace.trace(type="agent", name="handle")
    async def handle(request: int) -> str:
        seen["handle"] = current_run()
        return " ".join(await asyncio.gather(fetch(1), fetch(2)))

    with lunatrace.identify("user-42", {"plan": "pro"}):
        assert answer("what is new?") == "what is new?: 2 documents"
        assert await handle(7) == "page 1 page 2"

    rows = stored_runs(real_lunary, traced_to_real)
    assert row_shape(rows) == (
        ("agent", "answer", (("chain", summarize.__qualname__, ()), ("tool", "search", ()))),
        ("agent", "handle", (("tool", "fetch", ()), ("tool", "fetch", ()))),
    )
    runs = _ids(rows)
    assert set(runs) == set(seen.values())  # the ids the functions saw are the stored ids
    parents = {name: runs[run_id]["parent_run_id"] for name, run_id in seen.items()}
    assert parents == {
        "answer": None,
        "search": seen["answer"],
        "summarize": seen["answer"],
        "handle": None,
        "fetch-1": seen["handle"],
        "fetch-2": seen["handle"],
    }
    assert_finished(rows)
    answer_row, handle_row = runs[seen["answer"]], runs[seen["handle"]]
    assert (answer_row["input"], answer_row["output"]) == (
        {"question": "what is new?"},
        "what is new?: 2 documents",
    )
    assert runs[seen["search"]]["output"] == ["doc 1", "doc 2"]
    assert runs[seen["summarize"]]["input"] == {"question": "what is new?", "docs": ["doc 1", "doc 2"]}
    assert (handle_row["input"], handle_row["output"]) == ({"request": 7}, "page 1 page 2")
    assert [runs[seen[f"fetch-{p}"]]["input"] for p in (1, 2)] == [{"page": 1}, {"page": 2}]
    assert all(row["runtime"] and row["runtime"].startswith("lunatrace-py") for row in rows)
    assert users_of(real_lunary, rows) == {"user-42"}
    [user] = real_lunary.query(
        "select external_id, props from external_user where project_id = %s", traced_to_real.project_id
    )
    assert user == {"external_id": "user-42", "props": {"plan": "pro"}}


def test_an_exception_is_stored_with_its_message_and_stack(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    """A failing function is an ``error`` run with the message and the whole stack (what the
    dashboard shows to debug it); an agent that caught the failure still succeeds."""

    @lunatrace.trace(type="tool", name="lookup")
    def lookup(city: str) -> str:
        raise LookupError(f"no weather for {city}")

    @lunatrace.trace(type="agent", name="forecast")
    def forecast(city: str) -> str:
        try:
            return lookup(city)
        except LookupError:
            return "unknown"  # the agent carries on: only the tool failed

    @lunatrace.trace(name="checkout")
    def checkout(card: str) -> None:
        raise ValueError("card declined")

    assert forecast("Paris") == "unknown"
    with pytest.raises(ValueError, match="card declined") as raised:
        checkout("4242")
    assert raised.traceback[-1].name == "checkout"  # re-raised unchanged, traceback intact

    rows = stored_runs(real_lunary, traced_to_real)
    assert row_shape(rows) == (
        ("agent", "forecast", (("tool", "lookup", ()),)),
        ("chain", "checkout", ()),
    )
    assert_finished([only(rows, name="forecast")])
    assert only(rows, name="forecast")["output"] == "unknown"
    lookup_row, checkout_row = only(rows, name="lookup"), only(rows, name="checkout")
    assert_finished([lookup_row, checkout_row], status="error")
    assert lookup_row["error"]["message"] == "LookupError: no weather for Paris"
    assert checkout_row["error"]["message"] == "ValueError: card declined"
    for row, statement in (
        (lookup_row, 'raise LookupError(f"no weather for {city}")'),
        (checkout_row, 'raise ValueError("card declined")'),
    ):
        stack = row["error"]["stack"]
        assert stack.startswith("Traceback (most recent call last):"), stack
        assert statement in stack and stack.rstrip().endswith(row["error"]["message"])
    assert checkout_row["input"] == {"card": "4242"} and checkout_row["output"] is None


def test_llm_runs_store_reported_and_estimated_token_counts(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    """The token columns feed Lunary's usage and cost views: reported usage is stored as
    given, and an llm run with none gets lunatrace's estimate rather than nothing."""
    tracer = lunatrace.get_tracer()

    @lunatrace.trace(type="llm", name="gpt-4o-mini")
    def draft(prompt: str) -> dict[str, str]:
        return {"role": "assistant", "content": "A short and friendly draft answer."}

    @lunatrace.trace(type="agent", name="writer")
    def writer() -> str:
        llm = tracer.start_run(
            "llm", "gpt-4o", [{"role": "user", "content": "hello"}], params={"temperature": 0}
        )
        tracer.end_run(llm, {"role": "assistant", "content": "hi"}, usage={"prompt": 12, "completion": 5})
        return draft("Write a friendly answer.")["content"]

    writer()

    rows = stored_runs(real_lunary, traced_to_real)
    assert row_shape(rows) == (("agent", "writer", (("llm", "gpt-4o", ()), ("llm", "gpt-4o-mini", ()))),)
    assert_finished(rows)
    reported, estimated = only(rows, name="gpt-4o"), only(rows, name="gpt-4o-mini")
    assert (reported["prompt_tokens"], reported["completion_tokens"]) == (12, 5)
    assert reported["params"] == {"temperature": 0}
    assert reported["input"] == [{"role": "user", "content": "hello"}]
    assert reported["output"] == {"role": "assistant", "content": "hi"}
    # No usage reported: lunatrace counts the tokens itself and says so.
    assert estimated["prompt_tokens"] > 0 and estimated["completion_tokens"] > 0
    assert estimated["metadata"] == {"tokensEstimated": True}
    assert only(rows, name="writer")["prompt_tokens"] is None


@dataclass(frozen=True)
class Exchange:
    """One question and its answer in a thread, with the ids lunatrace returned for them."""

    question: str
    answer: str
    asked: str  # the user message's id
    answered: str  # the assistant message's id: the server's chat run ends up with it


def _track(thread: lunatrace.Thread, question: str, answer: str) -> Exchange:
    asked = thread.track_message("user", question)
    return Exchange(question, answer, asked, thread.track_message("assistant", answer))


def _assert_one_chat_run_per_exchange(rows: list[Row], thread_id: str, exchanges: list[Exchange]) -> None:
    """The server merges a user and an assistant message into ONE ``chat`` run per
    exchange, whose id becomes the assistant message's id (see ingestChatEvent)."""
    chats = [row for row in rows if row["parent_run_id"] == thread_id]
    stored = [(row["id"], row["input"], row["output"]) for row in chats]
    assert {row["id"] for row in chats} == {e.answered for e in exchanges}, f"stored chat runs: {stored}"
    runs = _ids(rows)
    for exchange in exchanges:
        chat = runs[exchange.answered]
        assert (chat["type"], chat["name"]) == ("chat", None)
        assert chat["input"] == [{"role": "user", "content": exchange.question}]
        assert chat["output"] == [{"role": "assistant", "content": exchange.answer}]
        assert chat["ended_at"] is not None and chat["ended_at"] >= chat["created_at"]
        assert exchange.asked not in runs  # renamed to the answer's id
    thread = runs[thread_id]
    assert (thread["type"], thread["parent_run_id"]) == ("thread", None)
    assert thread["input"] == {"role": "assistant", "content": exchanges[-1].answer}  # the latest message


def test_a_thread_with_two_exchanges_nested_work_and_feedback(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    """A conversation as the dashboard shows it: the thread run, one chat run per exchange,
    the work each question triggered under its exchange, and feedback where it was given
    (on an answer's message id, and on an agent run)."""
    agents: list[str] = []

    @lunatrace.trace(type="agent", name="support-bot")
    def reply(question: str) -> str:
        agents.append(current_run())
        time.sleep(0.01)  # a model's latency: each message gets a later timestamp than the last
        return f"About '{question}': it ships tomorrow."

    thread = lunatrace.open_thread(tags=["support"], user_id="user-42")
    exchanges = []
    for question in ("Where is my parcel?", "Can it come sooner?"):
        asked = thread.track_message("user", question)
        with lunatrace.parent(asked):
            answer = reply(question)
        exchanges.append(Exchange(question, answer, asked, thread.track_message("assistant", answer)))
    first, second = exchanges
    assert lunatrace.feedback(first.answered, thumb="up", comment="clear answer")
    assert lunatrace.feedback(agents[1], thumb="down", comment="too slow", rating=2)

    rows = stored_runs(real_lunary, traced_to_real)
    assert row_shape(rows) == (("thread", None, (("chat", None, (("agent", "support-bot", ()),)),) * 2),)
    _assert_one_chat_run_per_exchange(rows, thread.id, exchanges)
    runs = _ids(rows)
    assert set(runs) == {thread.id, first.answered, second.answered, *agents}
    assert runs[thread.id]["tags"] == ["support"]
    for exchange, agent_id in zip(exchanges, agents, strict=True):
        agent = runs[agent_id]
        # Nested under the user message, the agent followed its exchange to the answer's id.
        assert agent["parent_run_id"] == exchange.answered
        assert agent["input"] == {"question": exchange.question}
        assert agent["output"] == exchange.answer
        assert_finished([agent])
    assert runs[first.answered]["feedback"] == {"thumb": "up", "comment": "clear answer"}
    assert runs[agents[1]]["feedback"] == {"thumb": "down", "comment": "too slow", "rating": 2}
    assert runs[second.answered]["feedback"] is None and runs[agents[0]]["feedback"] is None
    # The thread's user reaches every run: messages carry it, nested work inherits it.
    assert users_of(real_lunary, rows) == {"user-42"}


def test_messages_tracked_back_to_back_still_make_one_chat_run_per_exchange(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    """A conversation recorded after the fact (or a bot that answers from a cache) tracks
    its messages within the same millisecond. The server finds the exchange a message
    belongs to by the latest ``created_at`` in the thread, so each message must still be
    stored as later than the one before it."""
    threads = [lunatrace.open_thread(user_id="replayed") for _ in range(5)]
    conversations = {
        thread.id: [_track(thread, f"question {i}", f"answer {i}") for i in range(4)] for thread in threads
    }

    rows = stored_runs(real_lunary, traced_to_real)
    for thread_id, exchanges in conversations.items():
        _assert_one_chat_run_per_exchange(rows, thread_id, exchanges)
    assert len(rows) == 5 + 5 * 4  # the threads and their exchanges, nothing else
