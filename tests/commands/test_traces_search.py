"""``lunatrace traces`` says what each trace was (input → output, tokens split, cost) and
finds traces by text, time and errors; ``lunatrace show`` marks estimated costs."""

from __future__ import annotations

import re
import time

import pytest

import lunatrace
from lunatrace.cli import main
from lunatrace.core.pricing import SOURCE


def _answer(question: str, reply: str, model: str = "gpt-4o-mini") -> str:
    tracer = lunatrace.get_tracer()
    root = tracer.start_run("chain", "RunnableSequence", {"question": question}, tags=["support"])
    llm = tracer.start_run("llm", model, [{"role": "user", "content": question}], parent_run_id=root)
    time.sleep(0.02)  # Lunary charges nothing for a call under 10 ms
    tracer.end_run(llm, {"role": "assistant", "content": reply}, usage={"prompt": 1200, "completion": 300})
    tracer.end_run(root, reply)
    return root


def _fail(question: str) -> str:
    tracer = lunatrace.get_tracer()
    root = tracer.start_run("chain", "RunnableSequence", {"question": question})
    tracer.error_run(root, TimeoutError("the vector store timed out"))
    return root


@pytest.fixture
def support_day() -> dict[str, str]:
    ids = {
        "refund": _answer("What is the refund policy?", "Refunds within 30 days."),
        "password": _answer("How do I reset my password?", "Use the sign-in page.", model="house-model-7"),
        "invoice": _fail("Where is my invoice?"),
    }
    assert lunatrace.flush(10)
    return ids


def _rows(out: str) -> list[str]:
    return [line for line in out.splitlines()[1:] if re.match(r"^[0-9a-f]{8}-", line)]


def test_each_line_says_what_went_in_and_out_tokens_and_cost(
    support_day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["traces"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    assert "INPUT → OUTPUT" in header and "TOKENS (P+C)" in header and "COST" in header
    invoice, password, refund = _rows(out)
    assert "What is the refund policy? → Refunds within 30 days." in refund
    assert "1200+300" in refund and "~$0.00036" in refund  # gpt-4o-mini, in Lunary's table
    assert "1200+300" in password and "$" not in password  # a model Lunary does not price: no cost
    assert "Where is my invoice? → TimeoutError: the vector st…" in invoice  # cut to its column
    assert out.rstrip().endswith(
        f"~$: estimated from {SOURCE}: what Lunary would charge (metadata.cost overrides it)"
    )


def test_search_time_and_error_filters(
    support_day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    def listed(*args: str) -> list[str]:
        assert main(["traces", *args]) == 0
        out = capsys.readouterr().out
        return [line.split()[0] for line in _rows(out)]

    assert listed("--search", "refund") == [support_day["refund"]]
    assert listed("-s", '"sign-in page"') == [support_day["password"]]  # a phrase, in an llm's output
    assert listed("-s", "timed out") == [support_day["invoice"]]  # an error message
    assert listed("-s", "support") == [support_day["password"], support_day["refund"]]  # a tag
    assert listed("--errors") == [support_day["invoice"]]
    assert listed("--since", "1h") == [support_day[k] for k in ("invoice", "password", "refund")]
    assert main(["traces", "--until", "1h"]) == 0
    assert "No traces match in" in capsys.readouterr().out
    assert listed("--since", "2000-01-01", "--until", "2999-01-01", "--errors", "-s", "invoice") == [
        support_day["invoice"]
    ]


def test_a_time_that_does_not_parse_is_refused_with_the_forms_it_takes(
    support_day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["traces", "--since", "last tuesday"]) == 2
    err = capsys.readouterr().err
    assert "cannot read 'last tuesday' as a time" in err and "2h" in err and "2026-12-01" in err


def test_show_marks_an_estimated_cost_and_says_where_it_comes_from(
    support_day: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", support_day["refund"]]) == 0
    out = capsys.readouterr().out
    assert "cost ~$0.00036" in out.splitlines()[0]  # the trace's header
    assert re.search(r"llm gpt-4o-mini  ✓ success  \d+ms  tokens 1200\+300  ~\$0\.00036", out)
    assert out.rstrip().endswith(
        f"estimated from {SOURCE}: what Lunary would charge (metadata.cost overrides it)"
    )
    assert main(["show", support_day["password"]]) == 0
    out = capsys.readouterr().out
    assert "$" not in out and SOURCE not in out
