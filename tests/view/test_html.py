"""The HTML view: every run shown, values escaped, self-contained, messages and calls readable."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import lunatrace
from lunatrace.core.transport import MemorySink
from lunatrace.view.html import INDENT_PX, render_html, render_value
from lunatrace.view.model import build_trace

VOID = {"br", "hr", "img", "meta", "input", "link"}


class _Checker(HTMLParser):
    """Collects tags, attributes and text; fails on unbalanced markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> (open: {self.stack[-3:]})"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(markup: str) -> _Checker:
    checker = _Checker()
    checker.feed(markup)
    checker.close()
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker


def test_every_run_is_a_row_with_type_status_and_timeline(agent_events: list[dict[str, Any]]) -> None:
    trace = build_trace(agent_events)
    page = parse(trace._repr_html_())

    rows = [attrs for tag, attrs in page.tags if tag == "details"]
    assert [r["data-run-id"] for r in rows] == [run.id for run, _ in trace.walk()]
    assert [(r["data-run-type"], r["data-status"]) for r in rows] == [
        ("agent", "success"),
        ("llm", "success"),
        ("tool", "success"),
        ("tool", "error"),
    ]
    assert "open" in rows[3] and "open" not in rows[0]  # failures start expanded
    bars = [a["style"] for t, a in page.tags if t == "span" and "lt-b" in (a.get("class") or "").split()]
    assert len(bars) == 4
    for style in bars:
        left, width = map(float, re.fullmatch(r"left:([\d.]+)%;width:([\d.]+)%", style or "").groups())
        assert 0 <= left <= 100 and 0 <= width <= 100 - left + 0.01
    text = "".join(page.text)
    assert "weather-agent" in text and "gpt-4o-mini" in text
    assert "17 tok" in text
    assert "LookupError: no weather for Atlantis" in text


def test_only_labels_are_indented_so_columns_align(agent_events: list[dict[str, Any]]) -> None:
    trace = build_trace(agent_events)
    page = parse(trace._repr_html_())
    summaries = [attrs for tag, attrs in page.tags if tag == "summary"]
    assert summaries and all("style" not in attrs for attrs in summaries)
    labels = [
        attrs["style"] for tag, attrs in page.tags if tag == "span" and attrs.get("class") == "lt-label"
    ]
    depths = [depth for _, depth in trace.walk()]
    assert labels == [f"padding-left:{depth * INDENT_PX}px" for depth in depths]
    assert depths == [0, 1, 1, 1]


def test_chat_messages_and_tool_calls_are_rendered_as_such(agent_events: list[dict[str, Any]]) -> None:
    markup = render_html(build_trace(agent_events))
    page = parse(markup)
    classes = [attrs.get("class") or "" for _, attrs in page.tags]
    assert "lt-msg lt-r-user" in classes
    assert "lt-msg lt-r-assistant" in classes
    # the llm's tool call, and the tool run itself, both shown as calls
    assert markup.count('<span class="lt-fn">lookup</span>') == 3
    text = "".join(page.text)
    assert '"city": "Paris"' in text
    assert "#call_1" in text


def test_untrusted_values_are_escaped_everywhere(memory_sink: MemorySink) -> None:
    payload = '<script>window.__pwned=1</script><img src=x onerror="alert(1)">"\'&'

    @lunatrace.trace(name=payload, tags=[payload], metadata={"note": payload})
    def step(prompt: str) -> str:
        raise ValueError(payload)

    tracer = lunatrace.get_tracer()
    with lunatrace.identify(payload):
        try:
            step(payload)
        except ValueError:
            pass
        llm = tracer.start_run("llm", payload, [{"role": payload, "content": payload, "name": payload}])
        tracer.end_run(llm, {"role": "assistant", "content": [{"type": "text", "text": payload}]})
        lunatrace.feedback(llm, comment=payload)
    markup = render_html(build_trace(memory_sink.events))
    page = parse(markup)

    assert "<script" not in markup.lower()
    assert "<img" not in markup.lower()
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    assert {tag for tag, _ in page.tags} <= {"div", "span", "details", "summary", "pre", "b", "style"}
    assert "".join(page.text).count("<script>window.__pwned=1</script>") >= 8


def test_self_contained_no_external_resources(agent_events: list[dict[str, Any]]) -> None:
    markup = render_html(build_trace(agent_events))
    assert not re.search(r"\b(src|href)\s*=", markup)
    assert "url(" not in markup and "@import" not in markup
    assert "prefers-color-scheme:dark" in markup
    assert render_html(build_trace(agent_events), style=False).count("<style>") == 0


def test_thread_view_with_feedback(memory_sink: MemorySink) -> None:
    thread = lunatrace.open_thread(user_id="u1")
    thread.track_message("user", "Is it raining?")
    reply = thread.track_message("assistant", "No, sunny.")
    lunatrace.feedback(reply, thumb="up", comment="great")
    page = parse(render_html(build_trace(memory_sink.events)))
    text = "".join(page.text)
    assert "user: Is it raining?" in text
    assert "assistant: No, sunny." in text
    assert "thumb: up" in text and "comment: great" in text


def test_render_value_shapes() -> None:
    conversation = {"messages": [{"role": "system", "content": "be brief"}], "k": 1}
    assert "lt-r-system" in render_value(conversation) and "&quot;k&quot;: 1" in render_value(conversation)
    assert render_value("plain <b>") == '<pre class="lt-pre">plain &lt;b&gt;</pre>'
    image = render_value({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]})
    assert "[image]" in image and "data:x" not in image


def test_retrieved_documents_are_shown_as_documents() -> None:
    documents = [
        {"id": "n1", "text": "Cats sleep <a lot>.", "score": 0.8123, "metadata": {"file": "cats.md"}},
        {"title": "Dogs", "content": "Dogs bark.", "metadata": {}},
    ]
    markup = render_value(documents)
    page = parse(markup)
    assert [a.get("class") for t, a in page.tags if t == "div" and "lt-doc" in (a.get("class") or "")] == [
        "lt-msg lt-doc",
        "lt-msg lt-doc",
    ]
    text = "".join(page.text)
    assert "n1 · score 0.812" in text and "Cats sleep <a lot>." in text and '"file": "cats.md"' in text
    assert "Dogs" in text and "Dogs bark." in text
    assert render_value([{"text": 1}]).startswith('<pre class="lt-pre">')


def test_empty_trace_says_so() -> None:
    markup = render_html(build_trace([]))
    assert "This trace has no runs." in markup
    parse(markup)
