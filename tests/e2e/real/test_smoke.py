"""The real server fixture itself: a decorated function reaches the real server's database."""

from __future__ import annotations

import lunatrace
from tests.support.real_lunary import Project, RealLunary


def test_a_traced_function_is_stored_by_the_real_server(
    real_lunary: RealLunary, traced_to_real: Project
) -> None:
    @lunatrace.trace(type="agent", name="smoke")
    def answer(question: str) -> str:
        return question.upper()

    with lunatrace.identify("user-7"):
        answer("hi")
    assert lunatrace.flush(30)
    runs = real_lunary.runs(traced_to_real)
    assert [(r["type"], r["name"], r["status"]) for r in runs] == [("agent", "smoke", "success")]
    assert runs[0]["ended_at"] is not None
    assert real_lunary.external_user(runs[0]["external_user_id"]) == "user-7"
    assert lunatrace.stats()["sent"] == 2
