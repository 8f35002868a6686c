"""The thread part of the demo: a two-message conversation with user feedback."""

from __future__ import annotations

from langchain_core.prompts import ChatPromptTemplate

import lunatrace
from lunatrace.integrations.langchain import CallbackHandler
from lunatrace.testing import ScriptedChatModel


@lunatrace.trace(type="agent", name="book_recommender")
def recommend(question: str) -> str:
    """Plain Python with a LangChain call inside: the chain nests under this run."""
    prompt = ChatPromptTemplate.from_messages([("system", "Recommend one book."), ("human", "{question}")])
    model = ScriptedChatModel(
        model_name="demo-gpt", messages=iter(["Try 'The Sea Around Us' by Rachel Carson."])
    )
    reply = (prompt | model).invoke({"question": question}, config={"callbacks": [CallbackHandler()]})
    return str(reply.content)


def run_thread() -> str:
    """User asks, the agent answers, the user gives a thumbs-up; returns the thread id."""
    thread = lunatrace.open_thread(user_id="demo-user", user_props={"name": "Ada"}, tags=["demo"])
    question = "Can you recommend a book about the sea?"
    asked = thread.track_message("user", question)
    with lunatrace.parent(asked):
        answer = recommend(question)
    answered = thread.track_message("assistant", answer)
    lunatrace.feedback(answered, thumb="up", comment="Great pick!")
    return thread.id
