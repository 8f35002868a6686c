"""Ignore rules in core: the rules themselves, and ``configure(ignore=...)`` applied by
``Tracer.start_run`` to ``@trace`` functions, explicit parents and LlamaIndex runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lunatrace
from lunatrace import Ignore
from lunatrace.core.config import Config, ConfigError
from lunatrace.core.ignore import IgnoreRules
from tests.support.fake_lunary import FakeLunary
from tests.support.ignoring import configure_ignoring
from tests.support.trees import assert_valid_tree, by_name, children

Events = Callable[[], list[dict[str, Any]]]


def test_a_string_is_a_run_type_when_it_is_one_else_a_name_pattern() -> None:
    rules = IgnoreRules(["tool", "Secret*", Ignore(name="chain")])
    assert rules.rules == (Ignore(type="tool"), Ignore(name="Secret*"), Ignore(name="chain"))
    assert rules.match("tool", "search") == Ignore(type="tool")
    assert rules.match("llm", "SecretModel") == Ignore(name="Secret*")
    assert rules.match("agent", "chain") == Ignore(name="chain")
    assert rules.match("chain", "secret") is None  # case-sensitive
    assert rules.match("chain", None) is None  # no name: no name pattern matches


def test_type_and_name_together_must_both_match_and_a_dropping_rule_wins() -> None:
    rules = IgnoreRules([Ignore(type="chain", name="step_?"), Ignore(name="step_[ab]", children="drop")])
    assert rules.match("chain", "step_c") == Ignore(type="chain", name="step_?")
    assert rules.match("tool", "step_c") is None
    assert rules.match("chain", "step_a") == Ignore(name="step_[ab]", children="drop")
    assert rules.match("chain", "step_a") is rules.match("chain", "step_a")  # cached


@pytest.mark.parametrize("bad", [Ignore, {"type": "chain"}, ["nope", 3]], ids=["class", "dict", "non-string"])
def test_configure_refuses_rules_it_cannot_read(bad: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.resolve(ignore=bad)
    assert caught.value.setting == "ignore"


def test_a_rule_needs_a_known_type_a_pattern_and_a_known_children_mode() -> None:
    for kwargs in ({}, {"type": "chainz"}, {"name": "x", "children": "keep"}):
        with pytest.raises(ValueError):
            Ignore(**kwargs)
    assert Config.resolve(ignore=[]).ignore is None
    assert Config.resolve(ignore="tool").ignore == IgnoreRules([Ignore(type="tool")])


def _nested(inner: Callable[[], Any]) -> Callable[[], Any]:
    @lunatrace.trace(name="outer")
    def outer() -> Any:
        return middle()

    @lunatrace.trace(name="glue_middle")
    def middle() -> Any:
        return inner()

    return outer


@lunatrace.trace(name="leaf", type="tool")
def leaf() -> str:
    return "done"


def test_an_ignored_function_is_not_sent_and_its_children_attach_to_its_parent(
    lunary_server: FakeLunary, tmp_path: Path, events_of: Events
) -> None:
    configure_ignoring(lunary_server, tmp_path, ["glue_*"])
    assert _nested(leaf)() == "done"

    events = events_of()
    assert_valid_tree(events)
    assert not [e for e in events if e.get("name") == "glue_middle"]  # neither start nor end
    (outer,) = by_name(events, "outer")
    assert [c["name"] for c in children(events, outer["runId"])] == ["leaf"]


def test_dropping_an_ignored_function_leaves_its_children_out(
    lunary_server: FakeLunary, tmp_path: Path, events_of: Events
) -> None:
    configure_ignoring(lunary_server, tmp_path, [Ignore(name="glue_*", children="drop")])
    _nested(leaf)()

    @lunatrace.trace(name="after")
    def after() -> None:
        leaf()

    after()  # a trace after the dropped subtree is recorded whole
    events = events_of()
    assert_valid_tree(events)
    assert [e["name"] for e in events if e["event"] == "start"] == ["outer", "after", "leaf"]
    (later,) = by_name(events, "after")
    assert [c["name"] for c in children(events, later["runId"])] == ["leaf"]


def test_an_explicit_parent_naming_an_ignored_run_means_its_kept_ancestor(
    lunary_server: FakeLunary, tmp_path: Path, events_of: Events
) -> None:
    configure_ignoring(lunary_server, tmp_path, [Ignore(type="retriever")])
    tracer = lunatrace.get_tracer()
    root = tracer.start_run("chain", "root")
    hidden = tracer.start_run("retriever", "docs", parent_run_id=root)
    below = tracer.start_run("embed", "vectors", parent_run_id=hidden)
    assert tracer.end_run(below) and tracer.error_run(hidden, "no docs") and tracer.end_run(root)

    events = events_of()
    assert_valid_tree(events)
    assert hidden not in {e["runId"] for e in events}
    assert [(c["runId"], c["name"]) for c in children(events, root)] == [(below, "vectors")]


def test_an_ignored_root_makes_its_children_roots(
    lunary_server: FakeLunary, tmp_path: Path, events_of: Events
) -> None:
    configure_ignoring(lunary_server, tmp_path, ["outer"])
    _nested(leaf)()

    events = events_of()
    assert_valid_tree(events)
    (middle,) = by_name(events, "glue_middle")
    assert middle.get("parentRunId") is None and by_name(events, "outer") == []
    assert [c["name"] for c in children(events, middle["runId"])] == ["leaf"]
