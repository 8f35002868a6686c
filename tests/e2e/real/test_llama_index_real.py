"""LlamaIndex traces as the real Lunary server stores them, checked against LlamaIndex's own
account of the same calls.

Both registrations are covered: ``instrument()`` (the instrumentation dispatcher) and
``Settings.callback_manager`` (the legacy callback handler). Beside lunatrace, each test
registers a recorder of its own on the same channel, so LlamaIndex itself says which
spans or events happened and which one is the parent of which. Those are contracted to
the calls lunatrace documents as runs (docs/llama_index.md, "What becomes a run"), and the
server's ``run`` rows must form exactly that tree: no run missing, none extra, none
re-parented. Models are LlamaIndex's offline mocks (MockLLM, MockEmbedding).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import pytest
from llama_index.core import Settings
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers import BaseSynthesizer
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.span import BaseSpan
from llama_index_instrumentation.span_handlers import BaseSpanHandler
from pydantic import PrivateAttr

import lunatrace
from lunatrace.integrations.llama_index import CallbackHandler, instrument, uninstrument
from tests.e2e.real.stored import (
    Node,
    Row,
    Tree,
    assert_finished,
    current_run,
    only,
    row_shape,
    shape,
    stored_runs,
    users_of,
)
from tests.integrations import li_fakes as F
from tests.support.real_lunary import Project, RealLunary

F.use_mock_models()
INDEX = F.build_index()  # built before any handler: it reports nothing
QUESTIONS = ("What do cats do?", "What do dogs do?", "What do birds do?")
UNKNOWN_MODEL = "unknown"


def _model_name(name: Any, class_name: str) -> str:
    """A model's id as LlamaIndex reports it, else its class (the mocks have no id)."""
    return name if isinstance(name, str) and name and name != UNKNOWN_MODEL else class_name


# --- what LlamaIndex reports: instrumentation spans --------------------------------------------

# LlamaIndex base class, its span methods shown as runs, and the run type (the docs' table).
SHOWN_SPANS: tuple[tuple[type[Any], frozenset[str], str], ...] = (
    (BaseQueryEngine, frozenset({"query", "aquery"}), "chain"),
    (BaseRetriever, frozenset({"retrieve", "aretrieve"}), "retriever"),
    (BaseSynthesizer, frozenset({"synthesize", "asynthesize"}), "chain"),
    (BaseEmbedding, frozenset({"get_query_embedding", "aget_query_embedding"}), "embed"),
    (BaseLLM, frozenset({"chat", "achat", "complete", "acomplete", "stream_chat", "stream_complete"}), "llm"),
)


@dataclass(frozen=True)
class Span:
    """One span as LlamaIndex's dispatcher announced it."""

    id: str
    parent: str | None
    instance: Any
    method: str

    def label(self) -> tuple[str, str] | None:
        """(run type, run name) if the docs say this call is a run, else ``None`` (folded)."""
        for base, methods, run_type in SHOWN_SPANS:
            if isinstance(self.instance, base) and self.method in methods:
                cls = type(self.instance).__name__
                if run_type == "llm":
                    return run_type, _model_name(self.instance.metadata.model_name, cls)
                if run_type == "embed":
                    return run_type, _model_name(self.instance.model_name, cls)
                return run_type, cls
        return None


class SpanRecorder(BaseSpanHandler[BaseSpan]):
    """A span handler on LlamaIndex's root dispatcher, beside lunatrace's: every span
    entered, with its parent, and the error of every span dropped."""

    _spans: list[Span] = PrivateAttr(default_factory=list)
    _dropped: dict[str, BaseException | None] = PrivateAttr(default_factory=dict)

    def new_span(
        self,
        id_: str,
        bound_args: Any,
        instance: Any | None = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        method = id_.rsplit("-", 5)[0].rpartition(".")[2]  # "Class.method-<uuid4>"
        self._spans.append(Span(id_, parent_span_id, instance, method))

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(
        self, id_: str, *args: Any, err: BaseException | None = None, **kwargs: Any
    ) -> None:
        self._dropped[id_] = err

    def shown(self) -> list[Node]:
        """The spans that are runs, each under its nearest shown ancestor.

        An LLM call is one run however many layers LlamaIndex stacks (``predict`` ->
        ``complete``, ``acomplete`` -> ``complete``): an llm span under an llm span folds.
        """
        by_id = {span.id: span for span in self._spans}
        labels: dict[str, tuple[str, str]] = {}
        nodes: list[Node] = []
        for span in self._spans:  # in the order entered: parents first
            label = span.label()
            parent = span.parent
            while parent is not None and parent not in labels:
                parent = by_id[parent].parent if parent in by_id else None
            if label is None or (label[0] == "llm" and parent is not None and labels[parent][0] == "llm"):
                continue
            labels[span.id] = label
            nodes.append((span.id, parent, *label))
        return nodes

    def tree(self) -> Tree:
        return shape(self.shown())

    def failed(self) -> list[tuple[str, str | None]]:
        """The (type, name) of the shown spans LlamaIndex dropped with an error."""
        return sorted((kind, name) for span_id, _, kind, name in self.shown() if self._dropped.get(span_id))


@pytest.fixture
def spans(traced_to_real: Project) -> Iterator[SpanRecorder]:
    """``instrument()`` (lunatrace configured for the test's project first), with a recorder
    of LlamaIndex's spans on the same root dispatcher."""
    recorder = SpanRecorder()
    dispatcher = get_dispatcher()
    dispatcher.add_span_handler(recorder)
    instrument()
    yield recorder
    uninstrument()
    dispatcher.span_handlers = [h for h in dispatcher.span_handlers if h is not recorder]


# --- what LlamaIndex reports: legacy callback events -------------------------------------------

# legacy event type -> run type and name (None: the model's) (the docs' legacy table)
SHOWN_EVENTS = {
    CBEventType.QUERY: ("chain", "query"),
    CBEventType.RETRIEVE: ("retriever", "retrieve"),
    CBEventType.SYNTHESIZE: ("chain", "synthesize"),
    CBEventType.LLM: ("llm", None),
    CBEventType.EMBEDDING: ("embed", None),
}


class EventRecorder(BaseCallbackHandler):
    """A legacy callback handler beside lunatrace's: every event started, with its parent,
    and the exception an event's end reported."""

    def __init__(self) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self.nodes: list[Node] = []
        self.failures: dict[str, BaseException] = {}
        self.exception_events: list[str] = []  # parents of EXCEPTION events
        self._events: dict[str, str | None] = {}  # event id -> nearest shown ancestor
        # The LLM event open in this context (task or thread), with its model: a second one
        # of the same model inside it is a layer of the same call (``acomplete`` calls
        # ``complete``; each reports an LLM event), one run (docs: "Legacy path").
        self._open_llm: ContextVar[tuple[str, str] | None] = ContextVar("open_llm", default=None)

    def on_event_start(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        shown_parent = self._events.get(parent_id)
        if event_type is CBEventType.EXCEPTION:
            self.exception_events.append(parent_id)
        label = SHOWN_EVENTS.get(event_type)
        if label is None:
            self._events[event_id] = shown_parent
            return event_id
        name = label[1]
        if name is None:
            serialized = (payload or {}).get(EventPayload.SERIALIZED) or {}
            name = _model_name(serialized.get("model_name"), str(serialized.get("class_name")))
        if event_type is CBEventType.LLM:
            outer = self._open_llm.get()
            if outer is not None and outer[1] == name:
                self._events[event_id] = shown_parent
                return event_id
            self._open_llm.set((event_id, name))
        self.nodes.append((event_id, shown_parent, label[0], name))
        self._events[event_id] = event_id
        return event_id

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        outer = self._open_llm.get()
        if outer is not None and outer[0] == event_id:
            self._open_llm.set(None)
        failure = (payload or {}).get(EventPayload.EXCEPTION)
        if isinstance(failure, BaseException):
            self.failures[event_id] = failure

    def start_trace(self, trace_id: str | None = None) -> None:
        return None

    def end_trace(self, trace_id: str | None = None, trace_map: dict[str, list[str]] | None = None) -> None:
        return None

    def tree(self) -> Tree:
        return shape(self.nodes)

    def label_of(self, event_id: str) -> tuple[str, str | None]:
        node = next(n for n in self.nodes if n[0] == event_id)
        return node[2], node[3]


@pytest.fixture
def callbacks(traced_to_real: Project) -> Iterator[EventRecorder]:
    """lunatrace's legacy handler and a recorder in ``Settings.callback_manager``; models are
    built again so that they capture both (LlamaIndex objects copy the manager when built)."""
    recorder = EventRecorder()
    previous = Settings._callback_manager
    Settings.callback_manager = CallbackManager([CallbackHandler(), recorder])
    F.use_mock_models()
    yield recorder
    Settings._callback_manager = previous
    F.use_mock_models()


# --- shared pieces ------------------------------------------------------------------------------


def _assert_query_rows(rows: Sequence[Row], answers: dict[str, str]) -> None:
    """Each query's runs carry its own question and answer (concurrent queries never mix),
    and its llm run has token counts (estimated: the mock reports none)."""
    by_parent: dict[str | None, list[Row]] = {}
    for row in rows:
        by_parent.setdefault(row["parent_run_id"], []).append(row)
    queries = [row for row in rows if row["parent_run_id"] is None and row["type"] == "chain"]
    assert sorted(q["input"] for q in queries) == sorted(answers)
    for query in queries:
        question = query["input"]
        assert query["output"] == answers[question]
        retriever, synth = sorted(by_parent[query["id"]], key=lambda r: r["type"] != "retriever")
        assert retriever["input"] == synth["input"] == question
        nodes = retriever["output"]
        assert len(nodes) == 2 and {n["text"] for n in nodes} <= set(F.TEXTS)
        [llm] = by_parent[synth["id"]]
        assert question in llm["input"][0]["content"]
        assert llm["output"] == {"role": "assistant", "content": answers[question]}
        assert llm["prompt_tokens"] > 10 and llm["completion_tokens"] > 0
        assert llm["metadata"]["tokensEstimated"] is True


@dataclass
class Looked:
    """What a traced function saw from inside a LlamaIndex retriever."""

    retriever_run: str | None = None
    lookup_run: str | None = None


def _retriever_with_a_traced_lookup(seen: Looked) -> BaseRetriever:
    """A custom retriever whose ``_retrieve`` calls a ``@lunatrace.trace`` function."""

    @lunatrace.trace(type="tool", name="lookup")
    def lookup(topic: str) -> list[str]:
        seen.lookup_run = current_run()
        return [text for text in F.TEXTS if topic.lower() in text.lower()]

    class NotesRetriever(BaseRetriever):
        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            seen.retriever_run = current_run()
            texts = lookup(query_bundle.query_str.split()[-2])
            return [NodeWithScore(node=TextNode(text=text), score=1.0) for text in texts]

    return NotesRetriever()


def _assert_lookup_nested(rows: Sequence[Row], seen: Looked, retriever_name: str) -> None:
    """The traced function's run sits under the retriever's run, with the ids seen inside."""
    retriever = only(rows, type="retriever")
    assert (retriever["id"], retriever["name"]) == (seen.retriever_run, retriever_name)
    lookup = only(rows, name="lookup")
    assert (lookup["id"], lookup["parent_run_id"], lookup["type"]) == (
        seen.lookup_run,
        retriever["id"],
        "tool",
    )
    assert (lookup["input"], lookup["output"]) == ({"topic": "cats"}, [F.TEXTS[0]])
    assert retriever["output"][0]["text"] == F.TEXTS[0]


# --- instrument() -------------------------------------------------------------------------------


async def test_concurrent_queries_are_stored_as_llama_index_span_trees(
    real_lunary: RealLunary, traced_to_real: Project, spans: SpanRecorder
) -> None:
    """Three queries at once on one engine: the stored trees are LlamaIndex's span trees,
    and no run carries another query's question (the spans interleave in time)."""
    engine = INDEX.as_query_engine()
    with lunatrace.identify("li-user"):
        answers = await asyncio.gather(*(engine.aquery(q) for q in QUESTIONS))

    rows = stored_runs(real_lunary, traced_to_real)
    assert row_shape(rows) == spans.tree()
    assert len(rows) == 3 * 5  # query, retriever, embed, synthesizer, llm
    assert_finished(rows)
    _assert_query_rows(rows, {q: str(a) for q, a in zip(QUESTIONS, answers, strict=True)})
    assert users_of(real_lunary, rows) == {"li-user"}


def test_a_failed_llm_call_fails_the_runs_whose_spans_llama_index_dropped(
    real_lunary: RealLunary, traced_to_real: Project, spans: SpanRecorder
) -> None:
    """The runs stored as errors are exactly the shown spans LlamaIndex dropped with the
    exception; the stack is stored once, on the llm run where it was raised."""
    llm = F.ScriptedLLM(script=["x"], fail_with=RuntimeError("llm down"))
    with pytest.raises(RuntimeError, match="llm down"):
        INDEX.as_query_engine(llm=llm).query(QUESTIONS[0])

    rows = stored_runs(real_lunary, traced_to_real)
    assert row_shape(rows) == spans.tree()
    failed = [row for row in rows if row["status"] == "error"]
    assert sorted((row["type"], row["name"]) for row in failed) == spans.failed()
    assert {row["type"] for row in failed} == {"llm", "chain"}  # llm, synthesizer, query
    assert_finished(failed, status="error")
    assert {row["error"]["message"] for row in failed} == {"RuntimeError: llm down"}
    # The stack once, on the run that failed first; the runs it went through say so.
    llm_row = only(rows, type="llm")
    assert "raise self.fail_with" in llm_row["error"]["stack"] and "_next" in llm_row["error"]["stack"]
    assert [bool(row["error"].get("stack")) for row in failed if row is not llm_row] == [False, False]
    assert_finished([row for row in rows if row not in failed])  # retriever and embed


def test_a_traced_function_inside_a_custom_retriever_nests_in_the_query(
    real_lunary: RealLunary, traced_to_real: Project, spans: SpanRecorder
) -> None:
    """Application code called by LlamaIndex (a custom retriever's ``_retrieve``) nests
    under the LlamaIndex run it runs in, not as a separate trace."""
    seen = Looked()
    engine = RetrieverQueryEngine.from_args(_retriever_with_a_traced_lookup(seen))
    answer = engine.query("What do cats do?")

    rows = stored_runs(real_lunary, traced_to_real)
    assert row_shape(rows) == (
        (
            "chain",
            "RetrieverQueryEngine",
            (
                ("chain", "CompactAndRefine", (("llm", "MockLLM", ()),)),
                ("retriever", "NotesRetriever", (("tool", "lookup", ()),)),
            ),
        ),
    )
    assert row_shape(row for row in rows if row["id"] != seen.lookup_run) == spans.tree()
    _assert_lookup_nested(rows, seen, "NotesRetriever")
    assert only(rows, parent_run_id=None)["output"] == str(answer)
    assert_finished(rows)


# --- Settings.callback_manager (legacy) ---------------------------------------------------------


async def test_legacy_queries_are_stored_as_llama_index_event_trees(
    real_lunary: RealLunary, traced_to_real: Project, callbacks: EventRecorder
) -> None:
    """The legacy path: the stored trees are the callback events' trees (the index build's
    embedding included), for queries running at once."""
    index = F.build_index()  # after the handler: it reports its embedding call
    engine = index.as_query_engine()
    with lunatrace.identify("li-user"):
        answers = await asyncio.gather(*(engine.aquery(q) for q in QUESTIONS))

    rows = stored_runs(real_lunary, traced_to_real)
    assert row_shape(rows) == callbacks.tree()
    assert sorted(t[:2] for t in row_shape(rows)) == [("chain", "query")] * 3 + [("embed", "MockEmbedding")]
    assert_finished(rows)
    queries = [row for row in rows if row["type"] != "embed" or row["parent_run_id"] is not None]
    _assert_query_rows(queries, {q: str(a) for q, a in zip(QUESTIONS, answers, strict=True)})
    build = only(rows, type="embed", parent_run_id=None)
    assert build["output"] == {"embeddings": 3, "dimensions": 8}
    assert users_of(real_lunary, queries) == {"li-user"}
    assert users_of(real_lunary, [build]) == {None}  # built outside identify()


def test_legacy_llm_failure_fails_the_runs_it_went_through(
    real_lunary: RealLunary, traced_to_real: Project, callbacks: EventRecorder
) -> None:
    """Legacy events say a failure only on the llm end and in an EXCEPTION event; the
    stored runs must still show every run the exception went through as failed."""
    index = F.build_index()
    with pytest.raises(RuntimeError, match="llm down"):
        index.as_query_engine(llm=F.ScriptedLLM(script=["x"], fail_with=RuntimeError("llm down"))).query("q?")

    rows = stored_runs(real_lunary, traced_to_real)
    assert row_shape(rows) == callbacks.tree()
    # LlamaIndex: the llm event ended with the exception, and an EXCEPTION event was
    # reported inside the synthesize event; the exception then left the query call.
    [failed_event] = callbacks.failures
    assert callbacks.label_of(failed_event) == ("llm", "scripted-1")
    assert [callbacks.label_of(p) for p in callbacks.exception_events] == [("chain", "synthesize")]
    failed = [row for row in rows if row["status"] == "error"]
    assert sorted(row["name"] for row in failed) == ["query", "scripted-1", "synthesize"]
    assert_finished(failed, status="error")
    assert {row["error"]["message"] for row in failed} == {"RuntimeError: llm down"}
    assert "llm down" in only(rows, type="llm")["error"]["stack"]
    assert_finished([row for row in rows if row not in failed])  # index build, retrieve, embed


def test_legacy_traced_function_inside_a_custom_retriever_nests_in_the_query(
    real_lunary: RealLunary, traced_to_real: Project, callbacks: EventRecorder
) -> None:
    """On the legacy path too, a traced function called inside an event nests under it."""
    seen = Looked()
    engine = RetrieverQueryEngine.from_args(_retriever_with_a_traced_lookup(seen))
    answer = engine.query("What do cats do?")

    rows = stored_runs(real_lunary, traced_to_real)
    assert row_shape(rows) == (
        (
            "chain",
            "query",
            (
                ("chain", "synthesize", (("llm", "MockLLM", ()),)),
                ("retriever", "retrieve", (("tool", "lookup", ()),)),
            ),
        ),
    )
    assert row_shape(row for row in rows if row["id"] != seen.lookup_run) == callbacks.tree()
    _assert_lookup_nested(rows, seen, "retrieve")
    assert only(rows, parent_run_id=None)["output"] == str(answer)
    assert_finished(rows)
