"""LangChain and LangGraph traces as the real Lunary server stores them, checked against
LangChain's own account of the same runs.

The integration tests (tests/integrations/) check the events lunatrace sends to a fake
server; these check what survives the real ingestion: its timestamp ordering, its parent
lookups (an unknown parent makes a run a root), its token logic and its user inheritance.
Each test passes a :class:`Recorder` beside lunatrace's handler. LangChain tells the
recorder every run's id, parent, kind, name, outcome and usage, and the server's ``run``
rows must be exactly those runs: none missing, none extra, none re-parented.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict
from uuid import UUID

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph

import lunatrace
from lunatrace.core.usage import encoding_name_for_model, estimate_usage, get_encoder
from lunatrace.integrations.langchain import CallbackHandler
from tests.integrations.lc_fakes import (
    AGENT_ROOT_TYPE,
    FakeToolChatModel,
    pause_and_resume,
    tool_call_message,
)
from tests.support.real_lunary import Project, RealLunary

Row = dict[str, Any]
PROMPT = ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "Say {word}")])


# --- what LangChain reports -------------------------------------------------------------------


@dataclass
class Seen:
    """One run as LangChain reported it: what the server's row for it must say."""

    parent: str | None
    type: str
    name: str
    status: str = "started"
    error: str | None = None  # the exception's message, for a failed run
    usage: Mapping[str, Any] | None = None  # the model's ``usage_metadata``, for an llm run


def _on_start(run_type: str) -> Callable[..., None]:
    """A recorder ``on_*_start`` hook: every start hook has the same shape."""

    def hook(
        self: Recorder,
        serialized: Mapping[str, Any] | None,
        payload: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.start(run_type, serialized, run_id, parent_run_id, tags, metadata or {}, kwargs.get("name"))

    return hook


def _on_outcome(failed: bool) -> Callable[..., None]:
    """A recorder ``on_*_end`` or ``on_*_error`` hook."""

    def hook(self: Recorder, outcome: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.finish(run_id, outcome, failed)

    return hook


class Recorder(BaseCallbackHandler):
    """Keeps LangChain's own view of each run, by run id.

    Inline like lunatrace's handler, so it sees the hooks as they fire on every thread and
    task. It applies the two mappings docs/langchain.md promises, both read from what
    LangChain reports: chains tagged ``langsmith:hidden`` are folded (their children move
    to the nearest shown ancestor), and a run named after its ``lc_agent_name`` is an
    ``agent``; an llm run is named after its ``ls_model_name``, else its class.
    """

    run_inline = True

    def __init__(self) -> None:
        self.runs: dict[str, Seen] = {}
        self._folded: dict[str | None, str | None] = {}

    def start(
        self,
        run_type: str,
        serialized: Mapping[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: Mapping[str, Any],
        name: str | None,
    ) -> None:
        parent = None if parent_run_id is None else str(parent_run_id)
        parent = self._folded.get(parent, parent)
        if run_type == "chain" and "langsmith:hidden" in (tags or ()):
            self._folded[str(run_id)] = parent
            return
        class_name = (serialized or {}).get("name")
        if run_type == "llm":
            name = metadata.get("ls_model_name")  # the model id, not a run name
        name = name or class_name
        if run_type == "chain" and name == metadata.get("lc_agent_name"):
            run_type = "agent"
        self.runs[str(run_id)] = Seen(parent, run_type, str(name))

    def finish(self, run_id: UUID, outcome: Any, failed: bool) -> None:
        seen = self.runs.get(str(run_id))
        if seen is None:
            return  # a folded run
        seen.status = "error" if failed else "success"
        if failed:
            seen.error = str(outcome)
        generations = getattr(outcome, "generations", None)
        if generations:
            seen.usage = getattr(getattr(generations[0][0], "message", None), "usage_metadata", None)

    def roots(self) -> list[str]:
        return [rid for rid, seen in self.runs.items() if seen.parent is None]

    def named(self, name: str) -> list[str]:
        return [rid for rid, seen in self.runs.items() if seen.name == name]

    def trace_of(self, root: str) -> set[str]:
        """``root`` and every run below it."""
        ids = {root}
        for rid in self.runs:
            if self.lineage(rid)[-1] == root:
                ids.add(rid)
        return ids

    def lineage(self, rid: str) -> list[str]:
        """``rid``, its parent, ..., its root."""
        chain = [rid]
        while (parent := self.runs[chain[-1]].parent) is not None:
            chain.append(parent)
        return chain

    on_chain_start = _on_start("chain")
    on_chat_model_start = _on_start("llm")
    on_llm_start = _on_start("llm")
    on_tool_start = _on_start("tool")
    on_retriever_start = _on_start("retriever")
    on_chain_end = on_llm_end = on_tool_end = on_retriever_end = _on_outcome(False)
    on_chain_error = on_llm_error = on_tool_error = on_retriever_error = _on_outcome(True)


def watched(**handler_options: Any) -> tuple[Recorder, RunnableConfig]:
    """A recorder, and a run config giving it and a lunatrace handler (with
    ``handler_options``) to LangChain."""
    recorder = Recorder()
    return recorder, RunnableConfig(callbacks=[CallbackHandler(**handler_options), recorder])


# --- what the server stored -------------------------------------------------------------------


def stored_runs(real_lunary: RealLunary, project: Project) -> dict[str, Row]:
    """The project's rows by run id, once lunatrace has delivered everything (the server
    answers a request only after writing it, so a flush is enough)."""
    assert lunatrace.flush(60), "lunatrace could not deliver every event in 60 s"
    return {row["id"]: row for row in real_lunary.runs(project)}


def assert_stored(
    real_lunary: RealLunary, rows: Mapping[str, Row], expected: Mapping[str, Seen], user: str | None = None
) -> None:
    """The server stored exactly the ``expected`` runs, each ended as LangChain saw it.

    Ids, parents, types, names and statuses as a whole (so a diff shows every stray run),
    then per run: an end time, an error with the exception's message in its stack, an llm
    run's tokens and, with ``user``, the trace's user (given on the root, inherited below).
    """

    assert expected, "LangChain reported no run: the scenario did not run"
    stored = {rid: (r["parent_run_id"], r["type"], r["name"], r["status"]) for rid, r in rows.items()}
    assert stored == {rid: (s.parent, s.type, s.name, s.status) for rid, s in expected.items()}
    for rid, seen in expected.items():
        row = rows[rid]
        assert row["ended_at"] is not None, f"{seen.name} never ended"
        if seen.status == "error":
            assert seen.error and seen.error in row["error"]["message"], row["error"]
            assert seen.error in row["error"]["stack"] and "Traceback" in row["error"]["stack"], row["error"]
        else:
            assert row["error"] is None, row["error"]
        if seen.type == "llm":
            assert_tokens(row, seen.usage)
        if user is not None:
            assert real_lunary.external_user(row["external_user_id"]) == user, seen.name


def assert_tokens(row: Row, usage: Mapping[str, Any] | None) -> None:
    """The model's own usage when it reported one, else lunatrace's estimate (flagged) of
    the prompt and answer it stored, not the server's."""
    tokens = (row["prompt_tokens"], row["completion_tokens"])
    if usage is not None:
        assert tokens == (usage["input_tokens"], usage["output_tokens"]), row["name"]
    else:
        assert row["metadata"]["tokensEstimated"] is True, row["metadata"]
        estimate = estimate_usage(row["name"], row["input"], row["output"])
        assert tokens == (estimate["prompt"], estimate["completion"]), row["name"]


def load_tiktoken(model: str) -> None:
    """Load the encoding lunatrace estimates ``model``'s tokens with, before the run.

    lunatrace gives a first load 0.5 s, and counts characters/4 for the calls made
    meanwhile; on a busy machine the load takes longer, and the test could not tell
    which of the two estimates it would get.
    """
    name = encoding_name_for_model(model)
    assert any(get_encoder(candidate, timeout=60) for candidate in (name, f"{name}_offline"))


# --- scenarios --------------------------------------------------------------------------------


def test_lcel_chain(real_lunary: RealLunary, traced_to_real: Project) -> None:
    load_tiktoken("FakeListChatModel")  # it reports no usage: lunatrace estimates it
    recorder, config = watched(user_id="user-lcel")
    chain = PROMPT | FakeListChatModel(responses=["hello world"]) | StrOutputParser()
    assert chain.invoke({"word": "hi"}, config=config) == "hello world"

    rows = stored_runs(real_lunary, traced_to_real)
    assert_stored(real_lunary, rows, recorder.runs, user="user-lcel")
    (root,) = recorder.roots()
    assert [s.name for s in recorder.runs.values()] == [
        "RunnableSequence",
        "ChatPromptTemplate",
        "FakeListChatModel",  # no model id: the class
        "StrOutputParser",
    ]
    assert rows[root]["input"] == {"word": "hi"} and rows[root]["output"] == "hello world"
    (llm,) = recorder.named("FakeListChatModel")
    assert rows[llm]["output"] == {"role": "assistant", "content": "hello world"}


@tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return f"22C and sunny in {city}"


@tool
def get_time(city: str) -> str:
    """Get the local time of a city."""
    return f"noon in {city}"


@tool
def explode(city: str) -> str:
    """Always fails."""
    raise ValueError(f"no data for {city}")


def agent_with(tools: list[Any], *replies: AIMessage | str) -> Any:
    """A ``create_agent`` agent whose fake model answers ``replies`` in turn."""
    return create_agent(FakeToolChatModel(messages=iter(replies)), tools=tools, name="weather_agent")


def test_agent_with_two_tools(real_lunary: RealLunary, traced_to_real: Project) -> None:
    calls = tool_call_message("get_weather", {"city": "Paris"}, "call_1")
    calls.tool_calls.append(
        {"name": "get_time", "args": {"city": "Paris"}, "id": "call_2", "type": "tool_call"}
    )
    agent = agent_with([get_weather, get_time], calls, "Sunny, and it is noon.")
    recorder, config = watched()
    result = agent.invoke({"messages": [("human", "weather and time in Paris?")]}, config=config)
    assert result["messages"][-1].content == "Sunny, and it is noon."

    rows = stored_runs(real_lunary, traced_to_real)
    assert_stored(real_lunary, rows, recorder.runs)
    (root,) = recorder.roots()
    assert rows[root]["type"] == AGENT_ROOT_TYPE and rows[root]["name"] == "weather_agent"
    tools = {rows[rid]["name"]: rows[rid] for rid, seen in recorder.runs.items() if seen.type == "tool"}
    assert {name: row["output"] for name, row in tools.items()} == {
        "get_weather": "22C and sunny in Paris",
        "get_time": "noon in Paris",
    }
    assert {rows[row["parent_run_id"]]["name"] for row in tools.values()} == {"tools"}
    assert len([s for s in recorder.runs.values() if s.type == "llm"]) == 2


class Draft(TypedDict):
    topic: str
    text: str


def test_state_graph_with_a_subgraph_node(real_lunary: RealLunary, traced_to_real: Project) -> None:
    model = FakeToolChatModel(messages=iter(["a short draft"]))
    sub = StateGraph(Draft)
    sub.add_node("draft", lambda s: {"text": str(model.invoke(f"write about {s['topic']}").content)})
    sub.add_node("polish", lambda s: {"text": s["text"] + "!"})
    sub.add_edge(START, "draft")
    sub.add_edge("draft", "polish")
    sub.add_edge("polish", END)
    outer = StateGraph(Draft)
    outer.add_node("prepare", lambda s: {"topic": s["topic"].title()})
    outer.add_node("nested", sub.compile(name="writer"))
    outer.add_edge(START, "prepare")
    outer.add_edge("prepare", "nested")
    outer.add_edge("nested", END)
    recorder, config = watched()
    result = outer.compile(name="outer").invoke({"topic": "owls", "text": ""}, config=config)
    assert result == {"topic": "Owls", "text": "a short draft!"}

    rows = stored_runs(real_lunary, traced_to_real)
    assert_stored(real_lunary, rows, recorder.runs)
    (llm,) = recorder.named("fake-model-1")
    # The subgraph nests under its node, and the model call inside the subgraph's node.
    assert [rows[rid]["name"] for rid in recorder.lineage(llm)] == [
        "fake-model-1",
        "draft",
        "writer",
        "nested",
        "outer",
    ]


def test_streaming_a_chat_model(real_lunary: RealLunary, traced_to_real: Project) -> None:
    chain = PROMPT | FakeToolChatModel(messages=iter(["streamed in words"])) | StrOutputParser()
    recorder, config = watched()
    chunks = list(chain.stream({"word": "hi"}, config=config))
    assert len(chunks) > 2

    rows = stored_runs(real_lunary, traced_to_real)
    assert_stored(real_lunary, rows, recorder.runs)
    (root,) = recorder.roots()
    # LangChain gives a streamed chain's inputs only at its end; they are still stored.
    assert rows[root]["input"] == {"word": "hi"} and rows[root]["output"] == "".join(chunks)
    (llm,) = recorder.named("fake-model-1")
    assert recorder.runs[llm].usage is not None  # the final chunk's (checked above)
    assert rows[llm]["output"]["content"] == "".join(chunks)
    assert rows[llm]["metadata"]["timeToFirstTokenMs"] >= 0


def test_a_failing_chain_and_a_failing_tool(real_lunary: RealLunary, traced_to_real: Project) -> None:
    def increment(value: int) -> int:
        return value + 1

    def boom(value: int) -> int:
        raise ValueError(f"bad step {value}")

    recorder, config = watched()
    chain = RunnableLambda(increment) | RunnableLambda(boom)
    with pytest.raises(ValueError, match="bad step 2"):
        chain.invoke(1, config=config)
    agent = agent_with([explode], tool_call_message("explode", {"city": "Oslo"}, "call_9"))
    with pytest.raises(ValueError, match="no data for Oslo"):
        agent.invoke({"messages": [("human", "weather in Oslo?")]}, config=config)

    rows = stored_runs(real_lunary, traced_to_real)
    assert_stored(real_lunary, rows, recorder.runs)
    failed = {rows[rid]["name"] for rid, seen in recorder.runs.items() if seen.status == "error"}
    assert failed == {"RunnableSequence", "boom", "weather_agent", "tools", "explode"}
    (tool_run,) = recorder.named("explode")
    assert [rows[rid]["name"] for rid in recorder.lineage(tool_run)] == ["explode", "tools", "weather_agent"]


class EchoChatModel(BaseChatModel):
    """Answers ``echo <last message>``, with usage of its own: each concurrent trace's reply
    says which trace it belongs to."""

    model_name: str = "echo-1"

    @property
    def _llm_type(self) -> str:
        return "echo-chat-model"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        text = str(messages[-1].content)
        usage: Any = {
            "input_tokens": len(text),
            "output_tokens": len(text) + 5,
            "total_tokens": 2 * len(text) + 5,
        }
        message = AIMessage(content=f"echo {text}", usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=message)])


async def test_concurrent_ainvokes_on_one_handler(real_lunary: RealLunary, traced_to_real: Project) -> None:
    async def pause(value: Any) -> Any:
        """Hand the loop to the other traces, so that their runs interleave."""
        await asyncio.sleep(0.01)
        return value

    chain = PROMPT | RunnableLambda(pause) | EchoChatModel() | StrOutputParser()
    recorder, config = watched()
    roots = [str(uuid.uuid4()) for _ in range(20)]
    answers = await asyncio.gather(
        *(
            chain.ainvoke(
                {"word": f"w{i}"}, {**config, "run_id": UUID(root), "metadata": {"user_id": f"u{i}"}}
            )
            for i, root in enumerate(roots)
        )
    )
    assert answers == [f"echo Say w{i}" for i in range(20)]

    rows = stored_runs(real_lunary, traced_to_real)
    assert_stored(real_lunary, rows, recorder.runs)
    assert sorted(recorder.roots()) == sorted(roots)
    for i, root in enumerate(roots):
        trace = recorder.trace_of(root)
        assert len(trace) == 5  # the sequence, the prompt, pause, the model, the parser
        assert {real_lunary.external_user(rows[rid]["external_user_id"]) for rid in trace} == {f"u{i}"}
        (llm,) = [rid for rid in trace if rows[rid]["type"] == "llm"]
        assert rows[llm]["input"][-1] == {"role": "user", "content": f"Say w{i}"}
        assert rows[llm]["output"]["content"] == rows[root]["output"] == f"echo Say w{i}"


def test_decorated_functions_and_chains_nest_both_ways(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    decorated: dict[str, str | None] = {}

    @lunatrace.trace(name="normalise")
    def normalise(word: str) -> str:
        decorated["normalise"] = lunatrace.current_run_id()
        return word.strip().lower()

    def prepare(inputs: dict[str, str]) -> dict[str, str]:
        return {"word": normalise(inputs["word"])}

    chain = RunnableLambda(prepare) | PROMPT | FakeToolChatModel(messages=iter(["done"])) | StrOutputParser()
    recorder, config = watched()

    @lunatrace.trace(type="agent", name="answer")
    def answer(word: str) -> str:
        decorated["answer"] = lunatrace.current_run_id()
        return str(chain.invoke({"word": word}, config=config))

    with lunatrace.identify("user-nest"):  # on the outermost run: every row inherits it
        assert answer("  HI ") == "done"

    rows = stored_runs(real_lunary, traced_to_real)
    (chain_root,) = recorder.roots()
    (prepare_run,) = recorder.named("prepare")
    outer, inner = decorated["answer"], decorated["normalise"]
    assert outer and inner
    # LangChain sees its root as a root; it is stored under the function that invoked it,
    # and the function called inside ``prepare`` is stored under prepare's run.
    expected = {
        **recorder.runs,
        outer: Seen(None, "agent", "answer", "success"),
        chain_root: Seen(outer, "chain", "RunnableSequence", "success"),
        inner: Seen(prepare_run, "chain", "normalise", "success"),
    }
    assert_stored(real_lunary, rows, expected, user="user-nest")
    assert rows[inner]["output"] == "hi" and rows[outer]["output"] == "done"


def test_an_interrupted_graph_and_its_resume_are_one_story(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    paused, resumed = pause_and_resume(f"hitl-{uuid.uuid4()}")

    rows = stored_runs(real_lunary, traced_to_real)
    assert paused is not None and resumed is not None and paused != resumed
    assert rows[paused]["parent_run_id"] is None and rows[resumed]["parent_run_id"] == paused
    assert rows[paused]["status"] == rows[resumed]["status"] == "success"
    assert rows[paused]["metadata"]["interrupted"] is True
    assert rows[paused]["output"] == [{"question": "approve refund?"}]
    assert rows[resumed]["input"] == {"resume": "yes"}
    assert rows[resumed]["output"] == {"request": "refund", "answer": "yes"}
    asks = sorted((r for r in rows.values() if r["name"] == "ask"), key=lambda r: r["created_at"])
    assert [r["parent_run_id"] for r in asks] == [paused, resumed]
