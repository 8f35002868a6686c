"""Several Lunary projects in one process: ``lunatrace.project()`` and ``tracer_for``."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import lunatrace
from lunatrace import api
from lunatrace.core.config import ConfigError
from tests.support.fake_lunary import FakeLunary
from tests.support.trees import assert_valid_tree, by_name


@lunatrace.trace(name="work")
def work(n: int) -> int:
    return step(n) + 1


@lunatrace.trace(name="step", type="tool")
def step(n: int) -> int:
    return n * 2


def test_a_project_block_sends_its_runs_to_that_project_only(
    traced_to_server: FakeLunary, tmp_path: Path
) -> None:
    with FakeLunary() as other:
        work(1)
        with lunatrace.project(other.key, api_url=other.url) as routed:
            assert lunatrace.get_tracer() is routed
            work(2)
        work(3)
        assert lunatrace.flush(10)
        mine = by_name(traced_to_server.events, "work")
        theirs = by_name(other.events, "work")
        assert [e["input"] for e in mine] == [{"n": 1}, {"n": 3}]
        assert len(theirs) == 1 and len(by_name(other.events, "step")) == 1
        assert_valid_tree(other.events)
        assert {r.headers.get("Authorization") for r in other.requests} == {f"Bearer {other.key}"}
        assert {r.headers.get("Authorization") for r in traced_to_server.requests} == {
            f"Bearer {traced_to_server.key}"
        }


def test_each_project_keeps_one_request_in_flight_and_its_own_spool(
    traced_to_server: FakeLunary, tmp_path: Path
) -> None:
    lunatrace.configure(
        project_key=traced_to_server.key,
        api_url=traced_to_server.url,
        store_path=tmp_path / "spool" / "events.db",
        batch_max_events=10,
        flush_interval=0.05,
    )
    with FakeLunary() as other:
        traced_to_server.delay = other.delay = 0.02

        def traced(project: str | None) -> None:
            if project is None:
                for n in range(60):
                    work(n)
            else:
                with lunatrace.project(project, api_url=other.url):
                    for n in range(60):
                        work(n)

        threads = [threading.Thread(target=traced, args=(key,)) for key in (None, other.key)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert lunatrace.flush(30)
        assert len(traced_to_server.events) == len(other.events) == 60 * 4
        assert traced_to_server.max_in_flight == other.max_in_flight == 1
        routed = api.tracer_for(other.key, other.url)
        spool = routed.config.store_path
        assert spool.parent.parent == tmp_path / "spool" / "projects"
        assert other.key not in str(spool)  # named by a digest, never by the key


def test_a_bad_project_key_or_url_is_refused_before_anything_is_sent(traced_to_server: FakeLunary) -> None:
    with pytest.raises(ConfigError), lunatrace.project("not a key"):
        work(1)
    with pytest.raises(ConfigError), lunatrace.project(traced_to_server.key, api_url="ftp://nowhere"):
        work(2)
    assert lunatrace.flush(5)
    assert traced_to_server.events == []


def test_the_configured_project_named_again_is_the_process_tracer(traced_to_server: FakeLunary) -> None:
    with lunatrace.project(traced_to_server.key) as routed:
        assert routed is api._tracer


def test_a_handler_with_its_own_project_sends_its_runs_and_thread_there(traced_to_server: FakeLunary) -> None:
    from langchain_core.runnables import RunnableLambda

    from lunatrace.integrations.langchain import CallbackHandler

    with FakeLunary() as other:

        @lunatrace.trace(name="helper")
        def helper(x: str) -> str:
            return x

        chain = RunnableLambda(lambda x: helper(x) + "!", name="shout")
        routed = CallbackHandler(project_key=other.key, api_url=other.url, thread="support-7")
        chain.invoke("hi", config={"callbacks": [routed]})
        chain.invoke("ho", config={"callbacks": [CallbackHandler()]})
        assert lunatrace.flush(10)
        theirs = [e for e in other.events if e["event"] == "start"]
        assert [e["name"] for e in theirs] == ["shout"]
        assert [e["message"]["content"] for e in other.events if e["event"] == "chat"] == ["hi", "hi!"]
        mine = [e for e in traced_to_server.events if e["event"] == "start"]
        assert [e["name"] for e in mine] == ["helper", "shout", "helper"]
        # The function called inside the other project's run could not nest under it: a root
        # here rather than a child of a run this project never receives.
        assert "parentRunId" not in mine[0]
        assert mine[2]["parentRunId"] == mine[1]["runId"]
        assert_valid_tree(traced_to_server.events)


def test_the_official_handlers_constructor_is_accepted(traced_to_server: FakeLunary) -> None:
    from langchain_core.runnables import RunnableLambda

    from lunatrace.integrations.langchain import LunaryCallbackHandler

    with FakeLunary() as other:
        handler = LunaryCallbackHandler(app_id=other.key, api_url=other.url, ignore=["hidden-*"])
        inner = RunnableLambda(lambda x: x, name="hidden-step")
        RunnableLambda(lambda x: inner.invoke(x), name="kept").invoke(1, config={"callbacks": [handler]})
        assert lunatrace.flush(10)
        assert [e["name"] for e in other.events if e["event"] == "start"] == ["kept"]
        assert traced_to_server.events == []
    default = LunaryCallbackHandler()
    assert default.tracer() is lunatrace.get_tracer()
    with pytest.raises(ConfigError):
        LunaryCallbackHandler(app_id="not a key")
