"""What tracing a LangChain chain costs per invoke as payloads grow, side by side with the
official ``lunary`` SDK and Langfuse when they are installed.

Workloads, each ``ChatPromptTemplate | FakeListChatModel | StrOutputParser`` (4 runs,
8 hooks per invoke), invoked with:

* ``chain``: one word (the 3-step chain of ``langchain_overhead.py``);
* ``conversation``: a history of 100 messages of 500 characters (a ``MessagesPlaceholder``),
  ten of which mention tokens or keys, as conversations about an API do;
* ``rag``: 50 retrieved documents of 2 KB in the prompt (a 100 KB text, over the 64 KB
  field cap).

Configurations: no handler (the baseline), a no-op handler, lunatrace, ``lunary``'s
``LunaryCallbackHandler`` and Langfuse's ``CallbackHandler`` (each skipped with a note
when its package cannot be imported). Every SDK delivers to the same bare endpoint in a
process of its own (``bare_server.py``), so only the SDKs' CPU is counted. Per invoke:
the calling thread's CPU (``time.thread_time()``, what the application waits for) and the
whole process's (``time.process_time()`` around the invokes and the drain of the SDK's
queue: background threads included). Rounds are interleaved and a configuration's cost
is its least disturbed round (a shared machine only ever adds CPU time); "added" is that
minus the same with no handler.

Run: ``.venv/bin/python benchmarks/payloads.py [--invokes 300] [--rounds 7]``; with a venv
holding ``lunary`` and ``langfuse`` (``pip install -e . lunary langfuse``) for the
comparison columns.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bare_server import running  # noqa: E402
from benchmarks.langchain_overhead import Config, measure_invoke, noop_handler  # noqa: E402

BENCH_KEY = "0b3c5e8a-6d41-4f2a-9c77-1e2d3f4a5b6c"
_PROSE = (
    "the a of to and in is that for it as with on be by this are from at or an model answer question "
    "context user document source retrieval prompt reply each which when can will should their there "
    "about into more than other some time only also after"
)
_WORDS = tuple(_PROSE.split(" "))
# Words a conversation about an API uses, which a secret scan looks for.
_TOPICAL = ("token", "tokens", "key", "password", "auth")


def text(rng: random.Random, chars: int, topical: bool = False) -> str:
    """Deterministic prose of ``chars`` characters (``topical``: it mentions tokens or keys)."""
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(_TOPICAL) if topical and rng.random() < 0.05 else rng.choice(_WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:chars]


class Workload:
    """A chain, its input, and how many invokes make one measurement."""

    def __init__(self, name: str, chain: Any, inputs: dict[str, Any], share: int) -> None:
        self.name = name
        self.chain = chain
        self.inputs = inputs
        self.share = share  # the chain's invokes are divided by this


def workloads(messages: int, documents: int) -> list[Workload]:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.messages import AIMessage, HumanMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

    def chain(*messages_spec: Any) -> Any:
        model = FakeListChatModel(responses=["hello world", "second answer"])
        return ChatPromptTemplate.from_messages(list(messages_spec)) | model | StrOutputParser()

    rng = random.Random(7)
    history = [
        (HumanMessage if i % 2 == 0 else AIMessage)(content=text(rng, 500, topical=i % 10 == 3))
        for i in range(messages)
    ]
    context = "\n\n".join(f"[{i}] " + text(rng, 2_000) for i in range(documents))
    return [
        Workload("chain", chain(("system", "You are terse."), ("human", "Say {word}")), {"word": "hi"}, 1),
        Workload(
            "conversation",
            chain(("system", "You are helpful."), MessagesPlaceholder("history"), ("human", "{question}")),
            {"history": history, "question": "And the limit?"},
            8,
        ),
        Workload(
            "rag",
            chain(
                ("system", "Answer from the documents."),
                ("human", "Documents:\n{context}\n\nQuestion: {question}"),
            ),
            {"context": context, "question": "What does it say about retrieval?"},
            15,
        ),
    ]


def make_configs(url: str, tmp: str) -> list[Config]:
    import lunatrace
    from lunatrace.integrations.langchain import CallbackHandler

    lunatrace.configure(project_key=BENCH_KEY, api_url=url, store_path=Path(tmp) / "spool.db")

    def drain_lunatrace() -> None:
        if not lunatrace.flush(120):
            raise RuntimeError("lunatrace.flush timed out")

    configs = [
        Config("none", [], lambda: None),
        Config("noop", [noop_handler()], lambda: None),
        Config("lunatrace", [CallbackHandler()], drain_lunatrace),
    ]
    for make in (lunary_config, langfuse_config):
        config = make(url)
        if config is not None:
            configs.append(config)
    return configs


def lunary_config(url: str) -> Config | None:
    os.environ["LUNARY_PUBLIC_KEY"] = BENCH_KEY
    os.environ["LUNARY_API_URL"] = url
    try:
        import lunary
        from lunary import LunaryCallbackHandler
    except ImportError:
        print("note: lunary is not installed here: its column is left out (pip install lunary to compare)")
        return None

    def drain() -> None:
        queue = lunary.queue
        while queue.events:
            queue.consumer.send_batch()

    return Config("lunary", [LunaryCallbackHandler(app_id=BENCH_KEY, api_url=url)], drain)


def langfuse_config(url: str) -> Config | None:
    os.environ.update(
        LANGFUSE_PUBLIC_KEY="pk-lf-bench", LANGFUSE_SECRET_KEY="sk-lf-bench", LANGFUSE_BASE_URL=url
    )
    try:
        from langfuse import get_client
        from langfuse.langchain import CallbackHandler
    except ImportError:
        print(
            "note: langfuse is not installed here: its column is left out (pip install langfuse to compare)"
        )
        return None
    client = get_client()
    drain: Callable[[], None] = client.flush
    return Config("langfuse", [CallbackHandler()], drain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--invokes", type=int, default=300, help="invokes of the chain per round (fewer for the others)"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--documents", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running(BENCH_KEY) as url:
        run(make_configs(url, tmp), workloads(args.messages, args.documents), args.invokes, args.rounds)


def run(configs: list[Config], loads: list[Workload], invokes: int, rounds: int) -> None:
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for load in loads:
        for config in configs:
            measure(load, config, max(2, invokes // load.share // 4))  # warm-up
    for index in range(rounds):
        for load in loads:
            for config in configs:
                results.setdefault((load.name, config.name), []).append(
                    measure(load, config, max(2, invokes // load.share))
                )
        print(f"round {index + 1}/{rounds} done", file=sys.stderr)
    print(
        f"\n{rounds} rounds, best round, µs per invoke; 'added' is over no handler,"
        " 'x' over the no-op handler's added."
    )
    print(f"{'workload':13} {'handler':10} {'thread':>9} {'added':>9} {'process':>9} {'added':>9} {'x':>6}")
    for load in loads:
        best = {
            c.name: tuple(min(s[i] for s in results[(load.name, c.name)]) for i in (0, 1)) for c in configs
        }
        base, noop = best["none"], best["noop"]
        for config in configs:
            thread, process = best[config.name]
            added = process - base[1]
            ratio = added / (noop[1] - base[1]) if noop[1] > base[1] else float("nan")
            print(
                f"{load.name:13} {config.name:10} {thread:9.1f} {thread - base[0]:+9.1f}"
                f" {process:9.1f} {added:+9.1f} {ratio:6.1f}"
            )


def measure(load: Workload, config: Config, invokes: int) -> tuple[float, float]:
    return measure_invoke(load.chain, config, invokes, load.inputs)


if __name__ == "__main__":
    main()
