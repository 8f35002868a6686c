"""A monitored provider client called inside a LlamaIndex run nests under that run.

(Beside the LlamaIndex tests rather than the OpenAI ones: those also run in the venv of
the oldest clients, which has no LlamaIndex.)
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from llama_index.core.tools import FunctionTool

import lunatrace
from lunatrace.core.transport import MemorySink
from lunatrace.integrations.llama_index import instrument, uninstrument
from tests.support import fake_openai as fo


@pytest.fixture
def client() -> Iterator[openai.OpenAI]:
    instrument()
    with fo.running() as fake:
        yield lunatrace.monitor(openai.OpenAI(**fake.client_options()))
    uninstrument()


def test_a_call_inside_a_llama_index_tool_nests_under_the_tool(
    memory_sink: MemorySink, client: openai.OpenAI
) -> None:
    def capital(country: str) -> str:
        """The capital of a country, asked to the model."""
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": country}]
        )
        return str(answer.choices[0].message.content)

    assert str(FunctionTool.from_defaults(capital).call(country="France")) == fo.Script().text
    starts = {e["type"]: e for e in memory_sink.events if e["event"] == "start"}
    assert starts["llm"]["name"] == fo.ANSWERING_MODEL
    assert starts["llm"]["parentRunId"] == starts["tool"]["runId"]
