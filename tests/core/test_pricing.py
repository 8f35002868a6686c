"""Offline cost estimates: Lunary's own price table, read from the server's source, applied
with the server's rules (``calcRunCost``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lunatrace.core import pricing_data
from lunatrace.core.pricing import SOURCE, LlmCall, estimate, format_cost, user_cost
from tests.support.real_lunary import SERVER_DIR

REPO = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("update_prices", REPO / "scripts" / "update_prices.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["update_prices"] = module
    spec.loader.exec_module(module)
    return module


def test_the_price_table_is_what_the_servers_migrations_leave() -> None:
    """Regenerating from the server's source gives the committed module, but for its date."""
    script = _script()
    generated = script.render(SERVER_DIR, pricing_data.GENERATED)
    assert generated == (REPO / "lunatrace" / "core" / "pricing_data.py").read_text(encoding="utf-8")
    assert (SERVER_DIR / "UPSTREAM_COMMIT").read_text().strip() == pricing_data.UPSTREAM_COMMIT
    assert f"Lunary's price table of {pricing_data.GENERATED}" == SOURCE


def test_later_migrations_win_over_earlier_rows() -> None:
    names = [row[0] for row in pricing_data.MAPPINGS]
    # 0028 inserted gpt-4o-mini with the pattern of gpt-4o; 0042 corrected it
    mini = next(row for row in pricing_data.MAPPINGS if row[0] == "gpt-4o-mini")
    assert mini[1] == "^(gpt-4o-mini)$"
    # 0073 set a cached-input reduction of 0.5 in a smallint column: PostgreSQL keeps 1
    assert mini[5] == 1
    starts = [row[6] for row in pricing_data.MAPPINGS]
    assert starts == sorted(starts, reverse=True)  # tried latest start date first
    assert names.index("o3-pro") == 0


def _call(
    model: str, prompt: int = 0, completion: int = 0, sent: object = None, answer: object = None
) -> LlmCall:
    return LlmCall(model, prompt, completion, duration_ms=800, input=sent, output=answer)


def test_tokens_are_priced_per_million_and_cached_prompt_tokens_are_taken_off() -> None:
    assert estimate(_call("gpt-4o-mini", 1200, 300)) == pytest.approx(0.00018 + 0.00018)
    # gpt-4o: the row starting 2023-10-02 (2.5 / 10) wins over the older one (5 / 15)
    assert estimate(_call("gpt-4o", 1000, 1000)) == pytest.approx(0.0025 + 0.01)
    cached = LlmCall("gpt-4o", 1000, 1000, cached_prompt_tokens=1000, duration_ms=800)
    assert estimate(cached) == pytest.approx(0.0125 - 1 * 1000 / 1e6)
    assert estimate(_call("claude-3-5-sonnet", 100, 10)) == pytest.approx(300 / 1e6 + 150 / 1e6)


def test_characters_are_the_json_text_of_the_input_and_output() -> None:
    prompt = [{"role": "user", "content": "héllo"}]
    call = _call("gemini-pro", sent=prompt, answer="hi there")
    input_chars = len('[{"role":"user","content":"héllo"}]')
    assert estimate(call) == pytest.approx(round((0.125 * input_chars + 0.375 * 8) / 1e6, 10))


def test_a_name_no_pattern_matches_falls_back_on_the_older_list() -> None:
    # no row's pattern matches an Azure deployment name; the older list finds gpt-4-32k in it
    assert estimate(_call("my-GPT4-32k-deployment", 1000, 1000)) == pytest.approx(0.06 + 0.12)


def test_unknown_models_fast_calls_and_runs_without_timing_have_no_cost() -> None:
    assert estimate(_call("house-model-7", 1000, 1000)) is None
    assert estimate(LlmCall("gpt-4o", 1000, 1000, duration_ms=9)) is None  # a cached call
    assert estimate(LlmCall("gpt-4o", 1000, 1000, duration_ms=None)) is None
    assert estimate(LlmCall("", 1000, 1000, duration_ms=800)) is None


def test_a_cost_the_application_set_is_a_number_in_metadata() -> None:
    assert user_cost({"cost": 0.5}) == 0.5 and user_cost({"cost": 2}) == 2.0
    assert user_cost({"cost": True}) is None and user_cost({"cost": "0.5"}) is None and user_cost({}) is None


@pytest.mark.parametrize(
    ("cost", "estimated", "shown"),
    [
        (0.00036, True, "~$0.00036"),
        (0.0012346, True, "~$0.001235"),
        (0.25, False, "$0.25"),
        (12.5, False, "$12.50"),
        (0.000001, True, "~$0.000001"),
        (0.0, True, "~$0.00"),
    ],
)
def test_costs_read_as_money_never_in_exponent_form(cost: float, estimated: bool, shown: str) -> None:
    assert format_cost(cost, estimated) == shown


@given(
    model=st.text(max_size=40),
    prompt=st.integers(0, 10**7),
    completion=st.integers(0, 10**7),
    cached=st.integers(0, 10**7),
    duration=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_any_call_gets_a_number_or_none_and_never_an_error(
    model: str, prompt: int, completion: int, cached: int, duration: int | None
) -> None:
    found = estimate(LlmCall(model, prompt, completion, cached, duration))
    assert found is None or isinstance(found, float)
    if duration is None or duration < 10 or not model:
        assert found is None
