"""LangChain's own fake models, extended the way real providers behave, plus helpers.

``FakeToolChatModel`` is a ``GenericFakeChatModel`` that, like real chat integrations,
reports a model name, usage metadata and tool calls, supports ``bind_tools`` and
streams text then a final chunk carrying tool-call chunks and usage.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.retrievers import BaseRetriever

from lunatrace.testing import ScriptedChatModel


class FakeToolChatModel(ScriptedChatModel):
    """A scripted model (``lunatrace.testing``) with fixed usage and a dated response model,
    like a real provider, that can fail its first ``fail_times`` calls."""

    model_name: str = "fake-model-1"
    temperature: float = 0.3
    max_tokens: int = 256
    fail_times: int = 0
    usage: dict[str, Any] | None = None

    @property
    def _llm_type(self) -> str:
        return "fake-tool-chat-model"

    def _next_message(self, messages: list[BaseMessage]) -> AIMessage:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("model 500")
        message = next(self.messages)
        if isinstance(message, str):
            message = AIMessage(content=message)
        usage = self.usage or {"input_tokens": 12, "output_tokens": 7, "total_tokens": 19}
        return message.model_copy(
            update={
                "usage_metadata": usage,
                "response_metadata": {"model_name": f"{self.model_name}-2026", "finish_reason": "stop"},
            }
        )


def tool_call_message(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    call = {"name": name, "args": args, "id": call_id, "type": "tool_call"}
    return AIMessage(content="", tool_calls=[call])


class TinyRetriever(BaseRetriever):
    """Returns documents whose text shares a word with the query."""

    documents: list[Document]
    fail: bool = False

    def _get_relevant_documents(self, query: str, *, run_manager: Any = None) -> list[Document]:
        if self.fail:
            raise ConnectionError("vector store down")
        words = set(query.lower().split())
        return [d for d in self.documents if words & set(d.page_content.lower().split())]


def _version(package: str) -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(part) for part in version(package).split(".")[:3] if part.isdigit())


# create_agent marks its root with ``lc_agent_name`` since langchain 1.2.4; before that a
# create_agent root cannot be told from any other graph and is traced as a chain.
AGENT_ROOT_TYPE = "agent" if _version("langchain") >= (1, 2, 4) else "chain"


def tool_call_id(events: list[dict[str, Any]], run: dict[str, Any]) -> Any:
    """A tool run's call id: on its start (newer LangChain) or merged in on its end (older)."""
    ends = [e for e in events if e.get("runId") == run["runId"] and e["event"] in ("end", "error")]
    for event in (run, *ends):
        if "toolCallId" in event.get("metadata", {}):
            return event["metadata"]["toolCallId"]
    return None


class Approval(TypedDict, total=False):
    request: str
    answer: str


def approval_graph() -> Any:
    """A LangGraph graph named ``approval`` whose one node, ``ask``, pauses on
    ``interrupt({"question": "approve <request>?"})`` until resumed with the answer."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    def ask(state: Approval) -> Approval:
        return {"answer": interrupt({"question": f"approve {state['request']}?"})}

    builder = StateGraph(Approval)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=InMemorySaver(), name="approval")


def pause_and_resume(thread_id: str) -> tuple[str, str]:
    """Run :func:`approval_graph` until it pauses, then resume it with ``"yes"``, through one
    lunatrace handler; the root run ids of the paused and the resumed invocation."""
    from langgraph.types import Command

    from lunatrace.integrations.langchain import CallbackHandler

    graph, handler = approval_graph(), CallbackHandler()
    config: Any = {"callbacks": [handler], "configurable": {"thread_id": thread_id}}
    graph.invoke({"request": "refund"}, config=config)
    paused = handler.last_trace_id
    graph.invoke(Command(resume="yes"), config=config)
    resumed = handler.last_trace_id
    assert paused is not None and resumed is not None
    return paused, resumed
