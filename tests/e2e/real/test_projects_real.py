"""Two projects of the real Lunary server fed by one process at once."""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.runnables import RunnableLambda

import lunatrace
from lunatrace.integrations.langchain import CallbackHandler
from tests.support.real_lunary import Project, RealLunary


@lunatrace.trace(name="answer")
def answer(n: int) -> str:
    chain = RunnableLambda(lambda x: f"reply {x}", name="reply")
    result: str = chain.invoke(n, config={"callbacks": [CallbackHandler()]})
    return result


def test_each_project_stores_its_own_traces_whole(real_lunary: RealLunary, traced_to_real: Project) -> None:
    second = real_lunary.new_project()

    def traced(project: Project | None, offset: int) -> None:
        if project is None:
            for n in range(10):
                answer(offset + n)
            return
        with lunatrace.project(project.key):
            for n in range(10):
                answer(offset + n)

    threads = [threading.Thread(target=traced, args=args) for args in ((None, 0), (second, 100))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert lunatrace.flush(60)

    def stored(project: Project) -> list[dict[str, Any]]:
        return real_lunary.wait_for_runs(project, lambda rows: len(rows) >= 20)

    for project, inputs in ((traced_to_real, range(10)), (second, range(100, 110))):
        rows = stored(project)
        assert len(rows) == 20
        roots = [r for r in rows if r["parent_run_id"] is None]
        assert sorted(r["input"]["n"] for r in roots) == list(inputs)
        by_id = {r["id"]: r for r in rows}
        for row in rows:
            assert row["status"] == "success"
            if row["name"] == "reply":
                assert by_id[row["parent_run_id"]]["name"] == "answer"  # nested, in its own project
