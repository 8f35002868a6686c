"""``CallbackHandler(ignore=...)``: runs left out by type and by name, their children
attached to the nearest kept ancestor or dropped with them, through the real delivery."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool

import lunatrace
from lunatrace import Ignore
from lunatrace.integrations.langchain import CallbackHandler, instrument, uninstrument
from tests.support.fake_lunary import FakeLunary
from tests.support.ignoring import configure_ignoring
from tests.support.trees import assert_valid_tree, by_name, children

Events = Callable[[], list[dict[str, Any]]]
PROMPT = ChatPromptTemplate.from_messages([("human", "Say {word}")])


def _names(events: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in events if e["event"] == "start"]


def _shape(events: list[dict[str, Any]], parent: str | None = None) -> list[Any]:
    return [(c["name"], _shape(events, c["runId"])) for c in children(events, parent)]


@lunatrace.trace(name="helper")
def helper(value: dict[str, str]) -> dict[str, str]:
    return {"word": value["word"].upper()}


def _pipeline(inner_step: Any = None) -> Any:
    """prep -> inner_block (a -> model) -> parser, ``inner_block`` a named sub-sequence."""
    step = inner_step or RunnableLambda(lambda x: x, name="a")
    inner = (step | PROMPT | FakeListChatModel(responses=["hi there"])).with_config(run_name="inner_block")
    return RunnableLambda(lambda x: {"word": x}, name="prep") | inner | StrOutputParser()


def test_rules_by_type_leave_out_every_run_of_that_type(events_of: Events) -> None:
    chain = PROMPT | FakeListChatModel(responses=["hi"]) | StrOutputParser()
    chain.invoke({"word": "hi"}, config={"callbacks": [CallbackHandler(ignore=["llm", "tool"])]})

    events = events_of()
    assert_valid_tree(events)
    assert _shape(events) == [("RunnableSequence", [("ChatPromptTemplate", []), ("StrOutputParser", [])])]


def test_a_tool_is_matched_by_type_and_a_chain_by_its_name_with_wildcards(events_of: Events) -> None:
    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        return f"found {query}"

    chain = RunnableLambda(lambda x: lookup.invoke(x), name="use_lookup") | StrOutputParser()
    handler = CallbackHandler(ignore=[Ignore(type="tool"), "Str*Parser"])
    assert chain.invoke("owls", config={"callbacks": [handler]}) == "found owls"

    events = events_of()
    assert_valid_tree(events)
    assert _shape(events) == [("RunnableSequence", [("use_lookup", [])])]


def test_the_children_of_an_ignored_chain_attach_to_its_parent(events_of: Events) -> None:
    _pipeline().invoke("hi", config={"callbacks": [CallbackHandler(ignore=["inner_*"])]})

    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    assert [c["name"] for c in children(events, root["runId"])] == [
        "prep",
        "a",
        "ChatPromptTemplate",
        "FakeListChatModel",
        "StrOutputParser",
    ]


def test_dropping_an_ignored_chain_leaves_its_whole_subtree_out(events_of: Events) -> None:
    handler = CallbackHandler(ignore=[Ignore(name="inner_block", children="drop")])
    assert _pipeline().invoke("hi", config={"callbacks": [handler]}) == "hi there"

    events = events_of()
    assert_valid_tree(events)
    assert _shape(events) == [("RunnableSequence", [("prep", []), ("StrOutputParser", [])])]


def test_a_decorated_function_inside_an_ignored_run_nests_under_its_kept_ancestor(events_of: Events) -> None:
    handler = CallbackHandler(ignore=["a"])
    _pipeline(RunnableLambda(helper, name="a")).invoke("hi", config={"callbacks": [handler]})

    events = events_of()
    assert_valid_tree(events)
    (inner,) = by_name(events, "inner_block")
    assert [c["name"] for c in children(events, inner["runId"])] == [
        "helper",
        "ChatPromptTemplate",
        "FakeListChatModel",
    ]


def test_a_decorated_function_inside_a_dropped_run_is_dropped_with_it(events_of: Events) -> None:
    handler = CallbackHandler(ignore=[Ignore(name="a", children="drop")])
    _pipeline(RunnableLambda(helper, name="a")).invoke("hi", config={"callbacks": [handler]})

    events = events_of()
    assert_valid_tree(events)
    assert "helper" not in _names(events) and "a" not in _names(events)
    assert "FakeListChatModel" in _names(events)


def _ask_model(text: str) -> str:
    return str(FakeListChatModel(responses=["inner answer"]).invoke(text).content)


def test_langchain_runs_inside_a_function_ignored_via_configure(
    lunary_server: FakeLunary, tmp_path: Path, events_of: Events
) -> None:
    configure_ignoring(lunary_server, tmp_path, ["glue", Ignore(name="secret", children="drop")])
    glue = lunatrace.trace(name="glue")(_ask_model)
    secret = lunatrace.trace(name="secret")(_ask_model)
    chain = RunnableLambda(glue, name="kept") | RunnableLambda(secret, name="private")
    chain.invoke("hi", config={"callbacks": [CallbackHandler()]})

    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    assert _shape(events, root["runId"]) == [("kept", [("FakeListChatModel", [])]), ("private", [])]


def test_instrument_takes_the_rules(events_of: Events) -> None:
    instrument(ignore=["ChatPromptTemplate"])
    try:
        (PROMPT | FakeListChatModel(responses=["hi"])).invoke({"word": "x"})
    finally:
        uninstrument()

    events = events_of()
    assert_valid_tree(events)
    assert _shape(events) == [("RunnableSequence", [("FakeListChatModel", [])])]
