"""LCEL chains, models, retrievers and tools traced through the real delivery path."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler, dispatch_custom_event
from langchain_core.documents import Document
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import (
    AIMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_core.tools import tool

import lunatrace
from lunatrace.integrations.langchain import CallbackHandler
from tests.integrations.lc_fakes import (
    FakeToolChatModel,
    TinyRetriever,
    tool_call_id,
    tool_call_message,
)
from tests.support.trees import assert_valid_tree, by_name, children, end_of

PROMPT = ChatPromptTemplate.from_messages([("system", "You are terse."), ("human", "Say {word}")])


def simple_chain(*responses: str) -> Any:
    return PROMPT | FakeListChatModel(responses=list(responses) or ["hello world"]) | StrOutputParser()


def assert_simple_chain_tree(events: list[dict[str, Any]], root: dict[str, Any], answer: str) -> None:
    """One RunnableSequence with prompt, llm and parser children, each ended."""
    assert root["type"] == "chain" and root.get("parentRunId") is None
    kids = children(events, root["runId"])
    assert [k["name"] for k in kids] == ["ChatPromptTemplate", "FakeListChatModel", "StrOutputParser"]
    llm = kids[1]
    assert llm["type"] == "llm"
    assert llm["input"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hi"},
    ]
    llm_end = end_of(events, llm["runId"])
    assert llm_end["output"] == {"role": "assistant", "content": answer}
    # FakeListChatModel reports no usage: an estimate, flagged as such.
    assert llm_end["tokensUsage"]["prompt"] > 0 and llm_end["tokensUsage"]["completion"] > 0
    assert llm_end["metadata"]["tokensEstimated"] is True
    assert end_of(events, root["runId"])["output"] == answer


def test_invoke_builds_the_chain_tree(events_of: Any) -> None:
    answer = simple_chain().invoke(
        {"word": "hi"},
        config={"callbacks": [CallbackHandler()], "tags": ["t-outer"], "metadata": {"team": "a"}},
    )
    assert answer == "hello world"
    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    assert root["name"] == "RunnableSequence"
    assert root["input"] == {"word": "hi"}
    assert root["tags"] == ["t-outer"]  # LangChain's seq:step tags are dropped
    assert root["metadata"] == {"team": "a"}
    assert_simple_chain_tree(events, root, "hello world")
    prompt_end = end_of(events, by_name(events, "ChatPromptTemplate")[0]["runId"])
    assert prompt_end["output"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hi"},
    ]


async def test_ainvoke_builds_the_same_tree(events_of: Any) -> None:
    answer = await simple_chain("async answer").ainvoke(
        {"word": "hi"}, config={"callbacks": [CallbackHandler()]}
    )
    assert answer == "async answer"
    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    assert_simple_chain_tree(events, root, "async answer")


def test_stream_sends_deferred_inputs_and_first_token_time(events_of: Any) -> None:
    chunks = list(
        simple_chain("streamed answer").stream({"word": "hi"}, config={"callbacks": [CallbackHandler()]})
    )
    assert "".join(chunks) == "streamed answer"
    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    # LangChain defers stream inputs ({"input": ""} placeholder) to on_chain_end.
    assert "input" not in root
    assert end_of(events, root["runId"])["input"] == {"word": "hi"}
    assert end_of(events, root["runId"])["output"] == "streamed answer"
    llm = by_name(events, "FakeListChatModel")[0]
    llm_end = end_of(events, llm["runId"])
    assert llm_end["output"] == {"role": "assistant", "content": "streamed answer"}
    assert llm_end["metadata"]["timeToFirstTokenMs"] >= 0
    parser_end = end_of(events, by_name(events, "StrOutputParser")[0]["runId"])
    assert parser_end["input"]["role"] == "assistant"
    # The first token is noted on its run, not sent: the counts are of events.
    stats = lunatrace.stats()
    assert stats["queued"] == stats["sent"] == len(events)


async def test_astream_records_the_full_streamed_message(events_of: Any) -> None:
    chunks = [
        c async for c in simple_chain("abc def").astream({"word": "hi"}, {"callbacks": [CallbackHandler()]})
    ]
    assert "".join(chunks) == "abc def"
    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    assert end_of(events, root["runId"])["input"] == {"word": "hi"}
    llm_end = end_of(events, by_name(events, "FakeListChatModel")[0]["runId"])
    assert llm_end["output"]["content"] == "abc def"
    assert "timeToFirstTokenMs" in llm_end["metadata"]


def test_batch_keeps_each_item_in_its_own_tree(events_of: Any) -> None:
    chain = simple_chain("one", "two", "three")
    outputs = chain.batch([{"word": "hi"}] * 3, config={"callbacks": [CallbackHandler()]})
    assert sorted(outputs) == ["one", "three", "two"]
    events = events_of()
    assert_valid_tree(events)
    roots = children(events, None)
    assert len(roots) == 3
    answers = set()
    for root in roots:
        kids = children(events, root["runId"])
        assert [k["type"] for k in kids] == ["chain", "llm", "chain"]
        answer = end_of(events, root["runId"])["output"]
        assert end_of(events, kids[1]["runId"])["output"]["content"] == answer
        answers.add(answer)
    assert answers == {"one", "two", "three"}


def test_rag_chain_records_retrieved_documents(events_of: Any) -> None:
    retriever = TinyRetriever(
        documents=[
            Document(
                page_content="cats purr when happy", metadata={"source": "cats.md", "score": 0.9}, id="d1"
            ),
            Document(page_content="dogs bark", metadata={"title": "Dogs"}),
        ],
        tags=["ret-tag"],
    )
    prompt = ChatPromptTemplate.from_template("Context: {context}\nQ: {question}")
    chain = (
        {"context": retriever, "question": RunnablePassthrough()}
        | prompt
        | FakeListChatModel(responses=["They purr."])
        | StrOutputParser()
    )
    assert chain.invoke("do cats purr", config={"callbacks": [CallbackHandler()]}) == "They purr."
    events = events_of()
    assert_valid_tree(events)
    (ret,) = [e for e in events if e["event"] == "start" and e["type"] == "retriever"]
    assert ret["name"] == "TinyRetriever"
    assert ret["input"] == "do cats purr"
    assert ret["tags"] == ["ret-tag"]
    parallel = by_name(events, "RunnableParallel<context,question>")[0]
    assert ret["parentRunId"] == parallel["runId"]
    assert end_of(events, ret["runId"])["output"] == [
        {
            "id": "d1",
            "source": "cats.md",
            "content": "cats purr when happy",
            "metadata": {"source": "cats.md", "score": 0.9},
            "score": 0.9,
        }
    ]


def test_tool_calling_model_usage_params_and_tool_call_json(events_of: Any) -> None:
    model = FakeToolChatModel(
        messages=iter([tool_call_message("get_weather", {"city": "Paris"}, "call_1")]),
        usage={
            "input_tokens": 12,
            "output_tokens": 7,
            "total_tokens": 19,
            "input_token_details": {"cache_read": 4, "audio": None},
            "output_token_details": None,
        },
    )

    @tool
    def get_weather(city: str) -> str:
        """Get the weather for a city."""
        return f"22C in {city}"

    bound = model.bind_tools([get_weather], tool_choice="auto")
    message = bound.invoke(
        [
            SystemMessage("sys"),
            HumanMessage(
                content=[
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
                ]
            ),
            AIMessage(content="", tool_calls=[{"name": "get_weather", "args": {"city": "Rome"}, "id": "c0"}]),
            ToolMessage(content="19C", tool_call_id="c0"),
            FunctionMessage(content="{}", name="legacy_fn"),
            ChatMessage(content="be careful", role="critic"),
        ],
        stop=["END"],
        config={"callbacks": [CallbackHandler()]},
    )
    assert message.tool_calls[0]["args"] == {"city": "Paris"}
    events = events_of()
    assert_valid_tree(events)
    (llm,) = children(events, None)
    assert llm["name"] == "fake-model-1"  # ls_model_name, not the class
    assert llm["params"]["temperature"] == 0.3
    assert llm["params"]["maxTokens"] == 256
    assert llm["params"]["stop"] == ["END"]
    assert llm["params"]["toolChoice"] == "auto"
    assert llm["params"]["tools"][0]["function"]["name"] == "get_weather"
    assert llm["input"] == [
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "imageUrl": {"url": "https://x/cat.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": "",
            "toolCalls": [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    "id": "c0",
                }
            ],
        },
        {"role": "tool", "content": "19C", "toolCallId": "c0"},
        {"role": "function", "content": "{}", "name": "legacy_fn"},
        {"role": "critic", "content": "be careful"},
    ]
    end = end_of(events, llm["runId"])
    assert end["type"] == "llm"
    assert end["tokensUsage"] == {"prompt": 12, "completion": 7, "promptCached": 4}
    assert "tokensEstimated" not in end.get("metadata", {})
    assert end["metadata"]["responseModel"] == "fake-model-1-2026"
    (call,) = end["output"]["toolCalls"]
    assert call == {
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        "id": "call_1",
    }
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_streaming_with_tool_calls_merges_chunks(events_of: Any) -> None:
    model = FakeToolChatModel(
        messages=iter(
            [
                AIMessage(
                    content="Checking the weather", tool_calls=[{"name": "w", "args": {"c": "P"}, "id": "k1"}]
                )
            ]
        )
    )
    chunks = list(model.stream("weather?", config={"callbacks": [CallbackHandler()]}))
    assert len(chunks) >= 3
    events = events_of()
    assert_valid_tree(events)
    (llm,) = children(events, None)
    end = end_of(events, llm["runId"])
    assert end["output"]["role"] == "assistant"
    assert end["output"]["content"].strip() == "Checking the weather"
    assert end["output"]["toolCalls"] == [
        {"type": "function", "function": {"name": "w", "arguments": '{"c": "P"}'}, "id": "k1"}
    ]
    assert end["tokensUsage"] == {"prompt": 12, "completion": 7}  # from the final chunk
    assert end["metadata"]["timeToFirstTokenMs"] >= 0


def test_text_llm_and_n_generations(events_of: Any) -> None:
    llm = FakeListLLM(responses=["plain text answer"])
    assert llm.invoke("complete this", config={"callbacks": [CallbackHandler()]}) == "plain text answer"
    events = events_of()
    assert_valid_tree(events)
    (run,) = children(events, None)
    assert run["type"] == "llm" and run["name"] == "FakeListLLM"
    assert run["input"] == [{"role": "user", "content": "complete this"}]
    assert end_of(events, run["runId"])["output"] == {"role": "assistant", "content": "plain text answer"}


def test_usage_from_llm_output_when_messages_have_none(events_of: Any) -> None:
    from langchain_core.outputs import ChatGeneration, LLMResult

    handler = CallbackHandler()
    run_id = __import__("uuid").uuid4()
    handler.on_chat_model_start(
        {"id": ["x", "ChatOpenAI"], "kwargs": {"model_name": "gpt-4o-mini", "openai_api_key": "sk-secret"}},
        [[HumanMessage("hi")]],
        run_id=run_id,
        invocation_params={"temperature": 0.2, "api_key": "sk-secret", "max_completion_tokens": 5, "n": 2},
    )
    handler.on_llm_end(
        LLMResult(
            generations=[[ChatGeneration(message=AIMessage("a")), ChatGeneration(message=AIMessage("b"))]],
            llm_output={
                "token_usage": {
                    "prompt_tokens": 9,
                    "completion_tokens": 3,
                    "prompt_tokens_details": {"cached_tokens": 2},
                }
            },
        ),
        run_id=run_id,
    )
    events = events_of()
    assert_valid_tree(events)
    start = events[0]
    assert start["name"] == "gpt-4o-mini"  # from the serialized kwargs
    assert start["params"] == {"temperature": 0.2, "maxTokens": 5, "n": 2}
    assert "sk-secret" not in json.dumps(events)
    end = end_of(events, str(run_id))
    assert end["tokensUsage"] == {"prompt": 9, "completion": 3, "promptCached": 2}
    assert end["output"] == [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]


def test_model_error_ends_llm_and_chain_as_errors(events_of: Any) -> None:
    chain = PROMPT | FakeToolChatModel(messages=iter(["never"]), fail_times=1) | StrOutputParser()
    with pytest.raises(RuntimeError, match="model 500"):
        chain.invoke({"word": "hi"}, config={"callbacks": [CallbackHandler()]})
    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    llm = by_name(events, "fake-model-1")[0]
    for run in (llm, root):
        error = end_of(events, run["runId"])
        assert error["event"] == "error"
        assert error["error"]["message"] == "RuntimeError: model 500"
        assert "Traceback" in error["error"]["stack"] and "_next_message" in error["error"]["stack"]
    assert end_of(events, llm["runId"])["type"] == "llm"
    assert not by_name(events, "StrOutputParser")  # never started


def test_chain_step_error(events_of: Any) -> None:
    def boom(_: Any) -> Any:
        raise ValueError("bad step")

    chain = RunnableLambda(lambda x: x, name="identity") | RunnableLambda(boom)
    with pytest.raises(ValueError):
        chain.invoke(1, config={"callbacks": [CallbackHandler()]})
    events = events_of()
    assert_valid_tree(events)
    failing = by_name(events, "boom")[0]
    assert end_of(events, failing["runId"])["error"]["message"] == "ValueError: bad step"
    assert end_of(events, children(events, None)[0]["runId"])["event"] == "error"
    assert end_of(events, by_name(events, "identity")[0]["runId"])["event"] == "end"


def test_retriever_error(events_of: Any) -> None:
    retriever = TinyRetriever(documents=[], fail=True)
    with pytest.raises(ConnectionError):
        retriever.invoke("q", config={"callbacks": [CallbackHandler()]})
    events = events_of()
    assert_valid_tree(events)
    (ret,) = children(events, None)
    assert ret["type"] == "retriever"
    assert end_of(events, ret["runId"])["error"]["message"] == "ConnectionError: vector store down"


def test_tool_error_and_tool_message_error_status(events_of: Any) -> None:
    @tool
    def explode(city: str) -> str:
        """Always fails."""
        raise ValueError(f"no data for {city}")

    @tool
    def soft(city: str) -> str:
        """Fails softly."""
        from langchain_core.tools import ToolException

        raise ToolException(f"soft failure on {city}")

    soft.handle_tool_error = True
    handler = CallbackHandler()
    with pytest.raises(ValueError):
        explode.invoke({"city": "Oslo"}, config={"callbacks": [handler]})
    result = soft.invoke(
        {"name": "soft", "args": {"city": "Rome"}, "id": "call_7", "type": "tool_call"},
        config={"callbacks": [handler]},
    )
    assert result.status == "error"
    events = events_of()
    assert_valid_tree(events)
    hard, soft_run = children(events, None)
    assert hard["name"] == "explode" and hard["type"] == "tool" and hard["input"] == {"city": "Oslo"}
    assert end_of(events, hard["runId"])["error"]["message"] == "ValueError: no data for Oslo"
    assert tool_call_id(events, soft_run) == "call_7"
    soft_end = end_of(events, soft_run["runId"])
    assert soft_end["event"] == "error"
    assert soft_end["error"]["message"] == "soft failure on Rome"


def test_tool_output_from_tool_message(events_of: Any) -> None:
    @tool
    def get_weather(city: str) -> str:
        """Weather."""
        return f"22C in {city}"

    msg = get_weather.invoke(
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"},
        config={"callbacks": [CallbackHandler()]},
    )
    assert msg.content == "22C in Paris"
    events = events_of()
    (run,) = children(events, None)
    assert run["name"] == "get_weather" and tool_call_id(events, run) == "call_1"
    assert end_of(events, run["runId"])["output"] == "22C in Paris"


def test_with_retry_records_each_attempt(events_of: Any) -> None:
    model = FakeToolChatModel(messages=iter(["second time lucky"]), fail_times=1)
    retrying = model.with_retry(stop_after_attempt=3, wait_exponential_jitter=False)
    assert retrying.invoke("hi", config={"callbacks": [CallbackHandler()]}).content == "second time lucky"
    events = events_of()
    assert_valid_tree(events)
    (root,) = children(events, None)
    first, second = children(events, root["runId"])
    assert end_of(events, first["runId"])["event"] == "error"
    assert "retryAttempt" not in first.get("metadata", {})
    assert second["metadata"]["retryAttempt"] == 2
    assert second["tags"] == ["retry:attempt:2"]
    assert end_of(events, second["runId"])["output"]["content"] == "second time lucky"


def test_custom_events_land_on_their_run(events_of: Any) -> None:
    def step(x: int) -> int:
        dispatch_custom_event("progress", {"pct": 50})
        dispatch_custom_event("progress", {"pct": 100})
        return x + 1

    stepper = RunnableLambda(step, name="stepper")
    assert (RunnableLambda(lambda x: x) | stepper).invoke(1, config={"callbacks": [CallbackHandler()]}) == 2
    events = events_of()
    assert_valid_tree(events)
    run = by_name(events, "stepper")[0]
    recorded = json.loads(end_of(events, run["runId"])["metadata"]["customEvents"])
    assert [(e["name"], e["data"]) for e in recorded] == [
        ("progress", {"pct": 50}),
        ("progress", {"pct": 100}),
    ]
    assert "customEvents" not in end_of(events, children(events, None)[0]["runId"]).get("metadata", {})


def test_handler_options_apply_to_roots(events_of: Any) -> None:
    handler = CallbackHandler(user_id=42, user_props={"plan": "pro"}, tags=["prod"], metadata={"app": "x"})
    simple_chain().invoke({"word": "hi"}, config={"callbacks": [handler], "tags": ["t1"]})
    simple_chain().invoke({"word": "hi"}, config={"callbacks": [handler], "metadata": {"user_id": "u-9"}})
    events = events_of()
    assert_valid_tree(events)
    first, second = children(events, None)
    assert first["userId"] == "42" and first["userProps"] == {"plan": "pro"}
    assert first["tags"] == ["prod", "t1"]
    assert first["metadata"] == {"app": "x"}
    assert second["userId"] == "u-9"  # per-call metadata wins
    assert all("userId" not in e for e in children(events, first["runId"]))


def test_sample_rate_keeps_or_drops_whole_traces(events_of: Any) -> None:
    simple_chain().invoke({"word": "hi"}, config={"callbacks": [CallbackHandler(sample_rate=0.0)]})
    assert events_of() == []
    handler = CallbackHandler(sample_rate=0.5)
    for _ in range(40):
        simple_chain().invoke({"word": "hi"}, config={"callbacks": [handler]})
    events = events_of()
    assert_valid_tree(events)
    kept = len(children(events, None))
    assert 5 < kept < 35
    assert len([e for e in events if e["event"] == "start"]) == 4 * kept  # whole traces only
    assert not handler._unsampled


def test_thread_records_the_exchange(events_of: Any) -> None:
    import lunatrace

    thread = lunatrace.open_thread(tags=["support"], user_id="u1")
    handler = CallbackHandler(thread=thread)
    simple_chain("Sure.").invoke({"word": "hi"}, config={"callbacks": [handler]})
    events = events_of()
    user_msg, root_start = events[0], events[1]
    assert user_msg["type"] == "thread" and user_msg["event"] == "chat"
    assert user_msg["parentRunId"] == thread.id and user_msg["message"]["role"] == "user"
    assert user_msg["message"]["content"] == "hi"
    assert root_start["parentRunId"] == user_msg["runId"]
    assistant = [e for e in events if e.get("message", {}).get("role") == "assistant"]
    assert len(assistant) == 1 and assistant[0]["message"]["content"] == "Sure."
    assert_valid_tree(events, allow_parents=[thread.id, user_msg["runId"]])


class FlakyProviderLLM(FakeListLLM):
    """Retries like provider integrations do (``create_base_retry_decorator``), which is
    what fires ``on_retry``; the first ``failures`` calls raise."""

    failures: int = 2

    def _call(self, prompt: str, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> str:
        import tenacity
        from langchain_core.language_models.llms import create_base_retry_decorator

        def attempt() -> str:
            if self.failures > 0:
                self.failures -= 1
                raise TimeoutError("provider timeout")
            return super(FlakyProviderLLM, self)._call(prompt, stop, run_manager, **kwargs)

        decorator = create_base_retry_decorator([TimeoutError], max_retries=3, run_manager=run_manager)
        return str(decorator(attempt).retry_with(wait=tenacity.wait_none())())


def test_provider_retries_are_recorded_on_the_llm_run(events_of: Any) -> None:
    llm = FlakyProviderLLM(responses=["finally"])
    assert llm.invoke("hi", config={"callbacks": [CallbackHandler()]}) == "finally"
    events = events_of()
    assert_valid_tree(events)
    (run,) = children(events, None)
    retries = json.loads(end_of(events, run["runId"])["metadata"]["customEvents"])
    assert [(r["name"], r["data"]["attempt"]) for r in retries] == [("retry", 1), ("retry", 2)]
    assert retries[0]["data"]["error"] == "TimeoutError: provider timeout"


def test_abandoned_stream_still_ends_every_run(events_of: Any) -> None:
    stream = simple_chain("a b c d e f g").stream({"word": "hi"}, config={"callbacks": [CallbackHandler()]})
    assert next(stream)
    stream.close()
    events = events_of()
    assert_valid_tree(events)
    assert len(children(events, None)) == 1
    import lunatrace

    assert lunatrace.get_tracer().open_runs == 0


def test_runs_are_sent_under_langchains_own_run_ids(events_of: Any) -> None:
    class Ids(BaseCallbackHandler):
        run_inline = True

        def __init__(self) -> None:
            self.ids: list[str] = []

        def on_chain_start(self, *args: Any, run_id: UUID, **kwargs: Any) -> None:
            self.ids.append(str(run_id))

        def on_chat_model_start(self, *args: Any, run_id: UUID, **kwargs: Any) -> None:
            self.ids.append(str(run_id))

    ids = Ids()
    simple_chain().invoke({"word": "hi"}, config={"callbacks": [ids, CallbackHandler()]})
    events = events_of()
    assert len(ids.ids) == 4
    assert [e["runId"] for e in events if e["event"] == "start"] == ids.ids
    assert [e.get("parentRunId") for e in events if e["event"] == "start"] == [None] + [ids.ids[0]] * 3


def test_a_message_seen_twice_is_converted_once_and_never_altered() -> None:
    from langchain_core.outputs import ChatGeneration

    from lunatrace.integrations.langchain.convert import generations_to_openai, message_to_openai

    message = HumanMessage("hi")
    first = message_to_openai(message)
    assert message_to_openai(message) is first  # the next step's input: not converted again
    assert message_to_openai(HumanMessage("hi")) == first  # an equal message, converted anew
    assert generations_to_openai([[ChatGeneration(message=message)]])["role"] == "assistant"
    assert message_to_openai(message) == {"role": "user", "content": "hi"}  # left as it was


def test_message_shapes_are_told_apart_by_class_whatever_came_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Message objects are recognised by class (remembered); strings, dicts and
    ``("human", "hi")`` tuples still convert as themselves, before and after, and past the
    bound of remembered classes."""
    from collections import UserDict

    from lunatrace.integrations.langchain import convert

    monkeypatch.setattr(convert, "_OBJECT_CLASSES", {})
    shapes: list[Any] = [
        HumanMessage("from an object"),
        ("human", "from a tuple"),
        {"role": "user", "content": "from a dict"},
        UserDict({"role": "assistant", "content": "from a mapping"}),
        "from a string",
    ]
    expected = [
        {"role": "user", "content": "from an object"},
        {"role": "user", "content": "from a tuple"},
        {"role": "user", "content": "from a dict"},
        {"role": "assistant", "content": "from a mapping"},
        {"role": "user", "content": "from a string"},
    ]
    for order in (shapes, shapes[::-1]):
        for shape in order:
            assert convert._message_to_openai(shape) == expected[shapes.index(shape)]
    assert convert._OBJECT_CLASSES[HumanMessage] is True
    assert convert._OBJECT_CLASSES[tuple] is False and convert._OBJECT_CLASSES[UserDict] is False
    monkeypatch.setattr(convert, "MAX_CLASSES", 0)  # full: each class is checked every time
    monkeypatch.setattr(convert, "_OBJECT_CLASSES", {})
    assert [convert._message_to_openai(shape) for shape in shapes] == expected
    assert convert._OBJECT_CLASSES == {}


def test_run_ids_are_formatted_once_per_object_and_always_right(monkeypatch: pytest.MonkeyPatch) -> None:
    from uuid import uuid4

    from lunatrace.integrations.langchain import runs

    monkeypatch.setattr(runs, "_KEYS", {})
    monkeypatch.setattr(runs, "MAX_KEYS", 8)
    ids = [uuid4() for _ in range(20)]  # more than the bound: the memory starts again
    for _ in range(2):
        assert [runs.run_key(run_id) for run_id in ids] == [str(run_id) for run_id in ids]
    assert len(runs._KEYS) <= 8
    copy = UUID(str(ids[-1]))  # an equal id in another object: formatted on its own, the same
    assert runs.run_key(copy) == str(ids[-1])
    for _ in range(3):  # ids freed and their memory reused by new ones: never a stale text
        fresh = uuid4()
        assert runs.run_key(fresh) == str(fresh)
        del fresh
    assert runs.run_key(str(ids[0]).upper()) == str(ids[0])


def test_a_model_without_content_is_no_message_unless_one_was_set_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pydantic
    from langchain_core.prompt_values import ChatPromptValue

    from lunatrace.integrations.langchain import convert

    class Loose(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        type: str = "loose"

    class Strict(pydantic.BaseModel):
        type: str = "strict"

    monkeypatch.setattr(convert, "_CONTENTLESS", {})
    prompt = ChatPromptValue(messages=[HumanMessage("hi")])
    for _ in range(2):  # the class's answer is remembered: the same both times
        assert not convert.is_message(prompt)
        assert convert.is_message(AIMessage("hello"))
        assert convert.is_message(Loose(content="an extra field"))  # pydantic allows it: a message
        assert not convert.is_message(Loose())
        assert not convert.is_message(Strict())
    remembered = convert._CONTENTLESS
    assert remembered[ChatPromptValue] and remembered[Strict]
    assert not remembered[AIMessage] and not remembered[Loose]
    forced = Strict()
    object.__setattr__(forced, "content", "set on the instance")
    assert hasattr(forced, "content") and convert.is_message(forced)  # as ``hasattr`` has it
    assert convert.chain_payload(prompt) == [{"role": "user", "content": "hi"}]
