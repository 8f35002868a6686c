"""Write the example notebooks from the cells below, without outputs.

The notebooks are generated so they stay small, reviewable and output-free in git:
edit the cells here, then run ``.venv/bin/python notebooks/make_notebooks.py``.
The test suite executes every notebook (tests/e2e/test_notebooks.py).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SERVER_NOTE = """## Send the same traces to Lunary

Nothing above needs a server: with no key configured, lunatrace keeps every event in a
local SQLite store (`~/.lunatrace/events.db`, or `LUNATRACE_STORE`). To send them to
Lunary instead, set the project key before the first traced call, in the environment

```bash
export LUNARY_PUBLIC_KEY=<your project key>
export LUNARY_API_URL=https://your-lunary.example   # only for a self-hosted server
```

or in code: `lunatrace.configure(project_key="...", api_url="...")`. Events already in
the local store can be uploaded later with `lunatrace push`."""

SETUP = """import lunatrace

print(lunatrace.get_tracer().config.store_path)  # where traces go while no key is set"""


# The HTTP side of the notebooks' stand-in APIs, after their ``respond(body)``, which gives
# the content type and the bytes of each answer.
STAND_IN_SERVER = '''

class StandInApi(BaseHTTPRequestHandler):
    def do_POST(self):
        kind, data = respond(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), StandInApi)
threading.Thread(target=server.serve_forever, daemon=True).start()
server_url = f"http://127.0.0.1:{server.server_address[1]}"'''


# The Anthropic notebook: a stand-in for the Messages API (JSON and streamed answers) inside
# the notebook, a monitored client, a tool-using agent, and a streamed answer.
ANTHROPIC_SERVER = '''import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer(body: dict) -> dict:
    """A scripted reply: call the weather tool first, then answer from its result."""
    last = body["messages"][-1]["content"]
    if body.get("tools") and isinstance(last, str):
        content = [{"type": "text", "text": "Let me check."},
                   {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]
        stop = "tool_use"
    else:
        content, stop = [{"type": "text", "text": "It is sunny in Paris, 21°C."}], "end_turn"
    usage = {"input_tokens": 42, "output_tokens": 12}
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}


def events(message: dict) -> list:
    """The same reply as the Messages API streams it."""
    start = {**message, "content": [], "stop_reason": None}
    out = [("message_start", {"type": "message_start", "message": start})]
    for i, block in enumerate(message["content"]):  # text blocks only, in two pieces each
        text = block["text"]
        out.append(("content_block_start", {"type": "content_block_start", "index": i,
                                            "content_block": {"type": "text", "text": ""}}))
        for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
            out.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                "delta": {"type": "text_delta", "text": piece}}))
        out.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"]},
                                  "usage": {"output_tokens": message["usage"]["output_tokens"]}}))
    return [*out, ("message_stop", {"type": "message_stop"})]


def respond(body: dict) -> tuple:
    """The answer's content type and bytes: JSON, or the events of a stream."""
    message = answer(body)
    if body.get("stream"):
        blocks = (f"event: {n}\\ndata: {json.dumps(d)}\\n\\n" for n, d in events(message))
        return "text/event-stream", "".join(blocks).encode()
    return "application/json", json.dumps(message).encode()
''' + STAND_IN_SERVER + '''
api_url = server_url'''

ANTHROPIC_CLIENT = '''import anthropic

client = lunatrace.monitor(anthropic.Anthropic(api_key="sk-ant-offline", base_url=api_url))
# With a real key: lunatrace.monitor(anthropic.Anthropic()) and nothing else changes.'''

ANTHROPIC_AGENT = '''WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@lunatrace.trace(type="tool")
def get_weather(city: str) -> str:
    return f"sunny, 21°C in {city}"


@lunatrace.trace(type="agent")
def weather_agent(question: str) -> str:
    messages = [{"role": "user", "content": question}]
    while True:
        reply = client.messages.create(
            model="claude-sonnet-4-5", max_tokens=300, system="Use the tools.",
            messages=messages, tools=[WEATHER],
        )
        if reply.stop_reason != "tool_use":
            return reply.content[0].text
        messages.append({"role": "assistant", "content": reply.content})
        results = [
            {"type": "tool_result", "tool_use_id": block.id, "content": get_weather(**block.input)}
            for block in reply.content
            if block.type == "tool_use"
        ]
        messages.append({"role": "user", "content": results})


print(weather_agent("What is the weather in Paris?"))
lunatrace.flush()
trace = lunatrace.show()'''

ANTHROPIC_STREAM = '''with lunatrace.identify("user-42"):
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=300,
        messages=[{"role": "user", "content": "Once more, streamed."}], tags=["streamed"],
    ) as stream:
        for text in stream.text_stream:
            print(text, end="", flush=True)
print()
lunatrace.flush()
trace = lunatrace.show()'''

# The OpenAI notebook: a stand-in for the Chat Completions API (JSON, and server-sent events
# for streams) inside the notebook, a monitored client, a tool-calling agent, a stream.
OPENAI_SERVER = '''import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "gpt-4o-mini-2024-07-18"  # the model that answers a request for "gpt-4o-mini"
USAGE = {"prompt_tokens": 38, "completion_tokens": 11, "total_tokens": 49}


def completion(body: dict) -> dict:
    """A scripted reply: call the weather tool first, then answer from its result."""
    if body.get("tools") and body["messages"][-1]["role"] == "user":
        call = {"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}
        message, finish = {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
    else:
        message, finish = {"role": "assistant", "content": "It is sunny in Paris, 21°C."}, "stop"
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": USAGE}


def chunks(reply: dict, include_usage: bool) -> str:
    """The same text reply as OpenAI streams it, with a usage chunk when asked for."""
    words = reply["choices"][0]["message"]["content"].split(" ")
    deltas = [{"role": "assistant", "content": ""}] + [{"content": w + " "} for w in words]
    choices = [[{"index": 0, "delta": d, "finish_reason": None}] for d in deltas]
    out = [dict(reply, object="chat.completion.chunk", choices=c, usage=None) for c in choices]
    if include_usage:
        out.append(dict(reply, object="chat.completion.chunk", choices=[], usage=USAGE))
    return "".join(f"data: {json.dumps(c)}\\n\\n" for c in out) + "data: [DONE]\\n\\n"


def respond(body: dict) -> tuple:
    """The answer's content type and bytes: JSON, or the chunks of a stream."""
    reply = completion(body)
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return "text/event-stream", chunks(reply, include_usage).encode()
    return "application/json", json.dumps(reply).encode()
''' + STAND_IN_SERVER + '''
base_url = f"{server_url}/v1"'''

OPENAI_CLIENT = '''import openai

client = lunatrace.monitor(openai.OpenAI(api_key="sk-offline", base_url=base_url))
# With a real key: lunatrace.monitor(openai.OpenAI()) and nothing else changes.'''

OPENAI_AGENT = '''WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@lunatrace.trace(type="tool")
def get_weather(city: str) -> str:
    return f"sunny, 21°C in {city}"


@lunatrace.trace(type="agent")
def weather_agent(question: str) -> str:
    messages = [{"role": "system", "content": "Use the tools."}, {"role": "user", "content": question}]
    while True:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
        message = reply.choices[0].message
        if not message.tool_calls:
            return message.content
        messages.append(message)
        for call in message.tool_calls:
            result = get_weather(**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})


print(weather_agent("What is the weather in Paris?"))
lunatrace.flush()
trace = lunatrace.show()'''

OPENAI_STREAM = '''with lunatrace.identify("user-42"):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Once more, streamed."}],
        stream=True, stream_options={"include_usage": True}, tags=["streamed"],
    )
    for chunk in stream:
        if chunk.choices:
            print(chunk.choices[0].delta.content or "", end="", flush=True)
print()
lunatrace.flush()
trace = lunatrace.show()'''


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text)


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(text)


NOTEBOOKS: dict[str, list[nbformat.NotebookNode]] = {
    "01_langchain_quickstart.ipynb": [
        md(
            "# LangChain quick start\n\n"
            "Trace a LangChain chain with one callback handler, then look at the trace right here. "
            "Runs offline: the model is LangChain's own `FakeListChatModel`."
        ),
        code(SETUP),
        code(
            "from langchain_core.language_models import FakeListChatModel\n"
            "from langchain_core.output_parsers import StrOutputParser\n"
            "from langchain_core.prompts import ChatPromptTemplate\n\n"
            "from lunatrace.integrations.langchain import CallbackHandler\n\n"
            "prompt = ChatPromptTemplate.from_messages(\n"
            '    [("system", "You answer in one sentence."), ("human", "What is {topic}?")]\n'
            ")\n"
            'model = FakeListChatModel(responses=["A tide is the daily rise and fall of the sea."])\n'
            "chain = prompt | model | StrOutputParser()\n\n"
            'chain.invoke({"topic": "a tide"}, config={"callbacks": [CallbackHandler()]})'
        ),
        md(
            "`lunatrace.show()` displays the latest trace: the run tree with timings, "
            "and each run's inputs and outputs (click a row to expand it)."
        ),
        code("trace = lunatrace.show()"),
        md(
            "To trace every LangChain call in the process without passing callbacks, "
            "call `instrument()` once:"
        ),
        code(
            "from lunatrace.integrations.langchain import instrument\n\n"
            "instrument()\n"
            'chain.invoke({"topic": "the Moon"})\n'
            "trace = lunatrace.show()"
        ),
        md(SERVER_NOTE),
    ],
    "02_langgraph_agent.ipynb": [
        md(
            "# A LangGraph agent with tools\n\n"
            "`create_agent` builds a LangGraph agent; lunatrace shows the agent, each model call "
            "and each tool call. The model is a scripted fake that asks for two tools, then answers "
            "(`ScriptedChatModel`: LangChain's `GenericFakeChatModel` plus `bind_tools`)."
        ),
        code(SETUP),
        code(
            "from langchain.agents import create_agent\n"
            "from langchain_core.tools import tool\n\n"
            "from lunatrace.integrations.langchain import CallbackHandler\n"
            "from lunatrace.testing import ScriptedChatModel, tool_calls\n\n\n"
            "@tool\n"
            "def get_weather(city: str) -> str:\n"
            '    """The current weather in a city."""\n'
            '    return f"19°C and windy in {city}"\n\n\n'
            "@tool\n"
            "def get_local_time(city: str) -> str:\n"
            '    """The local time in a city."""\n'
            '    return "09:15"\n\n\n'
            "model = ScriptedChatModel(\n"
            "    messages=iter(\n"
            "        [\n"
            "            tool_calls(\n"
            '                ("get_weather", {"city": "Oslo"}), ("get_local_time", {"city": "Oslo"})\n'
            "            ),\n"
            '            "It is 09:15 in Oslo, 19°C and windy.",\n'
            "        ]\n"
            "    )\n"
            ")\n"
            'agent = create_agent(model, tools=[get_weather, get_local_time], name="travel_agent")\n'
            "result = agent.invoke(\n"
            '    {"messages": [("human", "Weather and time in Oslo?")]},\n'
            '    config={"callbacks": [CallbackHandler()]},\n'
            ")\n"
            'result["messages"][-1].content'
        ),
        code("trace = lunatrace.show()"),
        md("## A hand-built graph\n\nNodes show up as runs named after the node, in execution order."),
        code(
            "import operator\n"
            "from typing import Annotated, TypedDict\n\n"
            "from langgraph.graph import END, START, StateGraph\n\n\n"
            "class State(TypedDict):\n"
            "    text: str\n"
            "    steps: Annotated[list[str], operator.add]\n\n\n"
            "def shout(state: State) -> dict:\n"
            '    return {"text": state["text"].upper(), "steps": ["shout"]}\n\n\n'
            "def exclaim(state: State) -> dict:\n"
            '    return {"text": state["text"] + "!", "steps": ["exclaim"]}\n\n\n'
            "builder = StateGraph(State)\n"
            'builder.add_node("shout", shout)\n'
            'builder.add_node("exclaim", exclaim)\n'
            'builder.add_edge(START, "shout")\n'
            'builder.add_edge("shout", "exclaim")\n'
            'builder.add_edge("exclaim", END)\n'
            'graph = builder.compile(name="shouting_graph")\n'
            'graph.invoke({"text": "hello", "steps": []}, config={"callbacks": [CallbackHandler()]})'
        ),
        code("trace = lunatrace.show()"),
        md(SERVER_NOTE),
    ],
    "03_llama_index.ipynb": [
        md(
            "# LlamaIndex\n\n"
            "One call to `instrument()` traces every LlamaIndex query, retrieval, embedding and "
            "LLM call. Offline: `MockLLM` and `MockEmbedding` stand in for real models."
        ),
        code(SETUP),
        code(
            "from llama_index.core import Document, Settings, VectorStoreIndex\n"
            "from llama_index.core.embeddings import MockEmbedding\n"
            "from llama_index.core.llms import MockLLM\n\n"
            "from lunatrace.integrations.llama_index import instrument\n\n"
            "instrument()\n"
            "Settings.llm = MockLLM(max_tokens=16)\n"
            "Settings.embed_model = MockEmbedding(embed_dim=16)\n\n"
            "documents = [\n"
            '    Document(text="The Moon\'s gravity raises two tidal bulges on the oceans."),\n'
            '    Document(text="A synodic month, from new moon to new moon, lasts about 29.5 days."),\n'
            '    Document(text="Apollo 11 landed the first people on the Moon in July 1969."),\n'
            "]\n"
            "index = VectorStoreIndex.from_documents(documents)\n"
            "query_engine = index.as_query_engine(similarity_top_k=2)\n"
            'response = query_engine.query("Why are there tides?")\n'
            "str(response)[:60]"
        ),
        md("The query's trace: the retriever (with its query embedding), the synthesizer and the LLM call."),
        code("trace = lunatrace.show()"),
        md(SERVER_NOTE),
    ],
    "04_threads_users_feedback.ipynb": [
        md(
            "# Threads, users, tags and feedback\n\n"
            "Conversations are threads of messages; the work a message triggers nests under it. "
            "Users, tags and metadata set around a block apply to every run inside it."
        ),
        code(SETUP),
        code(
            '@lunatrace.trace(type="agent", name="support_agent")\n'
            "def support_agent(question: str) -> str:\n"
            "    return lookup_order(question.split()[-1])\n\n\n"
            '@lunatrace.trace(type="tool", name="lookup_order")\n'
            "def lookup_order(order_id: str) -> str:\n"
            '    return f"Order {order_id} ships tomorrow."\n\n\n'
            'with lunatrace.identify("user-42", {"plan": "pro"}), lunatrace.tags(["support"]):\n'
            '    support_agent("Where is order #1042")\n\n'
            "trace = lunatrace.show()"
        ),
        md("## A two-message thread with feedback"),
        code(
            'thread = lunatrace.open_thread(user_id="user-42", tags=["support"])\n'
            'asked = thread.track_message("user", "Where is order #1042?")\n'
            "with lunatrace.parent(asked):  # the agent's runs nest under the message\n"
            '    answer = support_agent("Where is order #1042")\n'
            'answered = thread.track_message("assistant", answer)\n'
            'lunatrace.feedback(answered, thumb="up", comment="Quick answer")\n\n'
            "trace = lunatrace.show(thread.id)"
        ),
        md(SERVER_NOTE),
    ],
    "05_offline_store_and_push.ipynb": [
        md(
            "# The offline store, and pushing it to a server later\n\n"
            "With no key, traces are kept in a local SQLite store that the `lunatrace` command "
            "can list (`lunatrace traces`), print (`lunatrace show`), browse (`lunatrace ui`) and "
            "upload (`lunatrace push`). Here a tiny stand-in for a Lunary server runs inside the "
            "notebook, so the push works offline too."
        ),
        code(SETUP),
        code(
            '@lunatrace.trace(name="nightly_summary")\n'
            "def nightly_summary(day: str) -> str:\n"
            '    return f"summary for {day}"\n\n\n'
            'for day in ("mon", "tue", "wed"):\n'
            "    nightly_summary(day)\n"
            "lunatrace.flush()\n"
            "trace = lunatrace.show()"
        ),
        md("The command line reads the same store (here through `python -m lunatrace.cli`):"),
        code(
            "import subprocess\n"
            "import sys\n\n\n"
            "def lunatrace_cli(*args: str, **env: str) -> None:\n"
            "    import os\n\n"
            "    result = subprocess.run(\n"
            '        [sys.executable, "-m", "lunatrace.cli", *args],\n'
            "        capture_output=True, text=True, env={**os.environ, **env},\n"
            "    )\n"
            "    print(result.stdout + result.stderr)\n"
            "    assert result.returncode == 0\n\n\n"
            'lunatrace_cli("traces", "--limit", "5")'
        ),
        md(
            "## Push to a server\n\n"
            "A minimal stand-in for Lunary's ingestion endpoint (`POST /v1/runs/ingest`), on "
            "127.0.0.1. With a real server, just set `LUNARY_PUBLIC_KEY` (and `LUNARY_API_URL` "
            "when self-hosted) and run `lunatrace push`."
        ),
        code(
            "import json\n"
            "import threading\n"
            "import uuid\n"
            "from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n\n"
            "received = []\n\n\n"
            "class Ingest(BaseHTTPRequestHandler):\n"
            "    def do_POST(self):\n"
            '        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))\n'
            '        received.extend(body["events"])\n'
            '        results = [{"id": e["runId"], "success": True} for e in body["events"]]\n'
            '        data = json.dumps({"results": results}).encode()\n'
            "        self.send_response(200)\n"
            '        self.send_header("Content-Type", "application/json")\n'
            '        self.send_header("Content-Length", str(len(data)))\n'
            "        self.end_headers()\n"
            "        self.wfile.write(data)\n\n"
            "    def log_message(self, *args):\n"
            "        pass\n\n\n"
            'server = ThreadingHTTPServer(("127.0.0.1", 0), Ingest)\n'
            "threading.Thread(target=server.serve_forever, daemon=True).start()\n"
            'server_url = f"http://127.0.0.1:{server.server_address[1]}"\n\n'
            'lunatrace_cli("push", LUNARY_PUBLIC_KEY=str(uuid.uuid4()), LUNARY_API_URL=server_url)\n'
            'print(len(received), "events received by the server")\n'
            "server.shutdown()"
        ),
        md(SERVER_NOTE),
    ],
    "06_anthropic.ipynb": [
        md(
            "# Anthropic\n\n"
            "`lunatrace.monitor(client)` traces every Messages API call of an `anthropic` client: "
            "the prompt, the tool calls, the usage, streams. Runs offline: a small stand-in for the "
            "Messages API runs inside the notebook, and the client is pointed at it."
        ),
        code(SETUP),
        code(ANTHROPIC_SERVER),
        code(ANTHROPIC_CLIENT),
        md(
            "An agent that calls a tool: each `messages.create` is an `llm` run named by the model "
            "that answered, under the agent, with the tool call in its output."
        ),
        code(ANTHROPIC_AGENT),
        md("A stream: `text_stream` as usual; the run ends with the stream, with the time to first token."),
        code(ANTHROPIC_STREAM),
        md(SERVER_NOTE),
    ],
    "07_openai.ipynb": [
        md(
            "# OpenAI\n\n"
            "`lunatrace.monitor(client)` traces every call of an `openai` client: the messages, "
            "the tool calls, the usage, streams, without LangChain. Runs offline: a small stand-in "
            "for the Chat Completions API runs inside the notebook, and the client is pointed at it."
        ),
        code(SETUP),
        code(OPENAI_SERVER),
        code(OPENAI_CLIENT),
        md(
            "An agent that calls a tool: each `chat.completions.create` is an `llm` run named by "
            "the model that answered (`gpt-4o-mini-2024-07-18`), under the agent, with the tool call "
            "in its output and the usage OpenAI reported."
        ),
        code(OPENAI_AGENT),
        md(
            "A stream: iterate it as usual; the run ends with the stream, with the usage of its last "
            "chunk (`include_usage`) and the time to first token. The per-call `tags=` never reaches "
            "OpenAI."
        ),
        code(OPENAI_STREAM),
        md(SERVER_NOTE),
    ],
}


def build() -> list[Path]:
    written = []
    for name, cells in NOTEBOOKS.items():
        notebook = new_notebook(
            cells=cells,
            metadata={
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
        )
        path = HERE / name
        nbformat.write(notebook, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in build():
        print(path)
