"""LlamaIndex runs left out by ``configure(ignore=...)``: their children attach to the
nearest kept run, or are dropped with them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lunatrace import Ignore
from lunatrace.integrations.llama_index import instrument, uninstrument
from tests.integrations import li_fakes as F
from tests.integrations.li_fakes import shape
from tests.support.fake_lunary import FakeLunary
from tests.support.ignoring import configure_ignoring
from tests.support.trees import assert_valid_tree

F.use_mock_models()
INDEX = F.build_index()
Events = Callable[[], list[dict[str, Any]]]
SYNTH = ("chain", "CompactAndRefine", [("llm", "MockLLM", [])])


@pytest.fixture
def instrumented() -> Iterator[None]:
    instrument()
    yield
    uninstrument()


@pytest.mark.usefixtures("instrumented")
@pytest.mark.parametrize(
    ("rule", "inside"),
    [
        ("retriever", [("embed", "MockEmbedding", []), SYNTH]),
        (Ignore(name="Vector*", children="drop"), [SYNTH]),
    ],
    ids=["reparent", "drop"],
)
def test_an_ignored_retriever(
    lunary_server: FakeLunary, tmp_path: Path, events_of: Events, rule: Any, inside: Any
) -> None:
    configure_ignoring(lunary_server, tmp_path, [rule])
    INDEX.as_query_engine().query("What do owls eat?")

    events = events_of()
    assert_valid_tree(events)
    assert shape(events) == [("chain", "RetrieverQueryEngine", inside)]
