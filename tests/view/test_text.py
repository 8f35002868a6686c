"""The terminal tree: one line per run, in tree order, safe to print."""

from __future__ import annotations

import re
from typing import Any

import lunatrace
from lunatrace.core.transport import MemorySink
from lunatrace.view.model import build_trace
from lunatrace.view.text import clean, preview, render_text


def test_tree_lines_in_order_with_status_duration_and_tokens(agent_events: list[dict[str, Any]]) -> None:
    trace = build_trace(agent_events)
    lines = render_text(trace).splitlines()

    assert lines[0].startswith(f"trace {trace.id}  ✓ success  ")
    assert "4 runs" in lines[0] and "1 llm call " in lines[0] and "tokens 12+5" in lines[0]
    assert "user user-7" in lines[0]
    runs = [line for line in lines[1:] if "─ " in line]
    assert runs[0].startswith("└─ agent weather-agent  ✓ success  ")
    assert runs[1].startswith("   ├─ llm gpt-4o-mini  ✓ success  ")
    assert runs[1].endswith("tokens 12+5")
    assert runs[2].startswith("   ├─ tool lookup  ✓ success  ")
    assert runs[3].startswith("   └─ tool lookup  ✗ error  ")
    assert len(runs) == 4
    assert "error: LookupError: no weather for Atlantis" in [line.strip() for line in lines]


def test_default_view_previews_inputs_and_outputs_on_one_line(agent_events: list[dict[str, Any]]) -> None:
    lines = render_text(build_trace(agent_events)).splitlines()
    assert lines[2] == '   │  input: {"question": "Weather in Paris?"}'
    assert lines[3] == "   │  output: 21 degrees in Paris"
    long_value = {"text": "x" * 1000}
    events = [dict(e) for e in agent_events]
    events[0]["input"] = long_value
    preview_line = render_text(build_trace(events)).splitlines()[2]
    assert preview_line.startswith('   │  input: {"text": "xxx') and preview_line.endswith("…")
    assert len(preview_line) < 140


def test_full_adds_inputs_outputs_and_stacks(agent_events: list[dict[str, Any]]) -> None:
    text = render_text(build_trace(agent_events), full=True)
    lines = bare(text)
    assert lines[2:5] == ["input: {", '"question": "Weather in Paris?"', "}"]  # JSON, indented
    assert "output: 21 degrees in Paris" in lines
    # A prompt reads as messages, one per line, and a tool call as a call (not escaped JSON).
    assert lines[lines.index("input:") + 1] == "[user] Weather in Paris?"
    assert '→ lookup({"city": "Paris"})' in lines
    assert "Traceback (most recent call last):" in text
    assert "Traceback" not in render_text(build_trace(agent_events))


def test_terminal_escapes_in_traced_values_are_neutralised(memory_sink: MemorySink) -> None:
    evil = "\x1b[2J\x1b]0;pwned\x07"

    @lunatrace.trace(name="step" + evil + "\nsecond line")
    def step(prompt: str) -> str:
        return prompt

    step(evil)
    text = render_text(build_trace(memory_sink.events), full=True)
    assert "\x1b" not in text and "\x07" not in text
    assert "chain step?[2J?]0;pwned? second line  ✓ success" in text
    assert "output: ?[2J?]0;pwned?" in text


def test_thread_messages_show_their_content_and_feedback(memory_sink: MemorySink) -> None:
    thread = lunatrace.open_thread()
    thread.track_message("user", "Hello there")
    reply = thread.track_message("assistant", "Hi! How can I help?")
    lunatrace.feedback(reply, thumb="down")
    lines = render_text(build_trace(memory_sink.events)).splitlines()
    assert lines[1].startswith("└─ thread thread  ✓ success")
    assert lines[2].startswith("   ├─ chat user: Hello there  ✓ success")
    assert lines[3].startswith("   └─ chat assistant: Hi! How can I help?  ✓ success")
    assert lines[3].endswith('feedback {"thumb": "down"}')


def test_empty_and_deep_traces() -> None:
    assert render_text(build_trace([])).splitlines()[1] == "(no runs)"
    depth = 3000
    events = [
        {
            "type": "chain",
            "event": "start",
            "runId": f"r{i}",
            "name": f"n{i}",
            "timestamp": "2026-01-01T00:00:00.000Z",
            **({"parentRunId": f"r{i - 1}"} if i else {}),
        }
        for i in range(depth)
    ]
    lines = render_text(build_trace(events)).splitlines()
    assert len(lines) == depth + 1
    assert "chain n2999  … started" in lines[-1]


def test_preview_is_one_short_line() -> None:
    assert preview("a\nb   c") == "a b c"
    assert len(preview("x" * 500)) == 120
    assert preview({"k": [1, 2]}) == '{"k": [1, 2]}'
    assert clean("ok\ttab\x1b") == "ok\ttab?"


def test_full_keeps_a_prompts_line_breaks_and_shows_tags_metadata_and_user(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    prompt = [
        {"role": "system", "content": "Be terse.\nAnswer in French."},
        {"role": "user", "content": "Hi"},
    ]
    with lunatrace.identify("ada"):
        rid = tracer.start_run("llm", "gpt-4o", prompt, tags=["beta", "fr"], metadata={"release": "12"})
    tracer.end_run(rid, {"role": "assistant", "content": "Salut."}, usage={"prompt": 9, "completion": 2})
    text = render_text(build_trace(memory_sink.events), full=True)
    lines = bare(text)
    assert lines[lines.index("input:") + 1 :][:3] == ["[system] Be terse.", "Answer in French.", "[user] Hi"]
    assert "\\n" not in text  # line breaks printed, not escaped
    assert "tags: beta, fr" in lines and "user: ada" in lines
    assert lines[lines.index("metadata: {") + 1] == '"release": "12"'
    short = bare(render_text(build_trace(memory_sink.events)))
    assert 'metadata: {"release": "12"}' in short


def test_the_header_counts_in_words_and_marks_estimated_tokens(memory_sink: MemorySink) -> None:
    tracer = lunatrace.get_tracer()
    tracer.end_run(tracer.start_run("llm", "gpt-4o", "a question"), "an answer")  # no usage: estimated
    header = render_text(build_trace(memory_sink.events)).splitlines()[0]
    assert "  1 run  1 llm call  tokens ~" in header


def bare(text: str) -> list[str]:
    """The lines of a rendered tree without its guides."""
    return [re.sub(r"^[\s│├└─]*", "", line) for line in text.splitlines()]
