"""A trace with ignored runs, as the real Lunary server stores it: a valid tree, every run
finished, the ignored run's children under its parent and a dropped subtree absent."""

from __future__ import annotations

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

import lunatrace
from lunatrace import Ignore
from lunatrace.integrations.langchain import CallbackHandler
from tests.e2e.real.stored import assert_finished, row_shape, stored_runs
from tests.support.real_lunary import Project, RealLunary

PROMPT = ChatPromptTemplate.from_messages([("human", "Say {word}")])


@lunatrace.trace(name="helper")
def helper(value: dict[str, str]) -> dict[str, str]:
    return value


def test_stored_runs_of_a_trace_with_ignored_runs_form_a_valid_tree(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    inner = (RunnableLambda(helper, name="a") | PROMPT | FakeListChatModel(responses=["hi"])).with_config(
        run_name="inner_block"
    )
    private = RunnableLambda(lambda text: StrOutputParser().invoke(text), name="private")
    chain = RunnableLambda(lambda x: {"word": x}, name="prep") | inner | StrOutputParser() | private
    handler = CallbackHandler(ignore=["inner_*", Ignore(name="private", children="drop")])
    assert chain.invoke("hi", config={"callbacks": [handler]}) == "hi"

    rows = stored_runs(real_lunary, traced_to_real)
    assert_finished(rows)
    assert row_shape(rows) == (  # row_shape fails on a row whose parent is not stored
        (
            "chain",
            "RunnableSequence",
            (
                ("chain", "ChatPromptTemplate", ()),
                ("chain", "StrOutputParser", ()),
                ("chain", "a", (("chain", "helper", ()),)),
                ("chain", "prep", ()),
                ("llm", "FakeListChatModel", ()),
            ),
        ),
    )
