"""``lunatrace ui`` in a real headless Chromium: the pages work and traced text never runs.

The viewer runs as the real command in a subprocess over a store recorded by the normal
tracing path; Debian's Chromium is driven by Playwright (``scripts/test.sh`` installs it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

import lunatrace
from tests.integrations.lc_fakes import pause_and_resume

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ATTACK = '<script>window.__pwned = 1; document.title = "pwned"</script>'
IMG_ATTACK = '<img src=x onerror="window.__pwned = 2">'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "Chromium missing: run scripts/test.sh (installs Debian's chromium)"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def viewer() -> Iterator[Callable[[], str]]:
    """Start ``lunatrace ui --port 0`` over the test's store; returns its URL."""
    processes: list[subprocess.Popen[str]] = []

    def start() -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "lunatrace.cli", "ui", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("lunatrace viewer on http://127.0.0.1:"), line + process.stderr.read()
        return line.split(" on ", 1)[1].split(" ", 1)[0]

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()


@lunatrace.trace(type="tool", name="search")
def search(query: str) -> list[str]:
    return [f"result for {query}"]


@lunatrace.trace(type="agent", name="research-agent")
def research(question: str) -> str:
    tracer = lunatrace.get_tracer()
    llm = tracer.start_run("llm", "gpt-4o-mini", [{"role": "user", "content": question}])
    tracer.end_run(llm, {"role": "assistant", "content": "searching"}, usage={"prompt": 9, "completion": 2})
    return search(question)[0]


@lunatrace.trace(type="chain", name="failing-job")
def failing_job() -> None:
    raise ValueError("disk full")


def record() -> None:
    research("what is lunatrace?")
    try:
        failing_job()
    except ValueError:
        pass
    research(f"ignore this {ATTACK} {IMG_ATTACK}")
    lunatrace.flush()


def test_trace_list_loads_and_opens_a_trace_tree(viewer: Callable[[], str], page: Page) -> None:
    record()
    url = viewer()
    page.goto(url)
    expect(page).to_have_title("lunatrace · traces")
    rows = page.locator("table.lt-list tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(1)).to_contain_text("failing-job")
    expect(rows.nth(1)).to_contain_text("error")

    page.locator("table.lt-list tbody tr").nth(2).get_by_role("link", name="research-agent").click()
    expect(page).to_have_title("lunatrace · research-agent")
    runs = page.locator("details.lt-run")
    expect(runs).to_have_count(3)
    assert runs.evaluate_all("els => els.map(e => e.dataset.runType)") == ["agent", "llm", "tool"]
    expect(runs.nth(1).locator("summary")).to_contain_text("gpt-4o-mini")
    expect(runs.nth(1).locator("summary")).to_contain_text("11 tok")
    # expanding a run shows its input and output
    runs.nth(2).locator("summary").click()
    expect(runs.nth(2).locator(".lt-call")).to_contain_text('"query": "what is lunatrace?"')
    expect(runs.nth(2).locator(".lt-body")).to_contain_text("result for what is lunatrace?")

    page.get_by_role("link", name="← all traces").click()
    page.get_by_label("status").select_option("error")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]status=error(&|$)"))
    expect(page.locator("table.lt-list tbody tr")).to_have_count(1)
    expect(page.locator("table.lt-list tbody tr")).to_contain_text("failing-job")


def test_script_in_a_prompt_is_shown_as_text_and_never_runs(viewer: Callable[[], str], page: Page) -> None:
    record()
    url = viewer()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    page.goto(url)
    page.locator("table.lt-list tbody tr").first.get_by_role("link").click()
    expect(page.locator("details.lt-run")).to_have_count(3)
    for summary in page.locator("details.lt-run > summary").all():
        summary.click()

    assert page.evaluate("window.__pwned") is None
    assert page.title() == "lunatrace · research-agent"
    assert page.locator("script").count() == 0
    assert page.locator("main img").count() == 0
    user_message = page.locator(".lt-msg.lt-r-user .lt-text")
    expect(user_message).to_have_text(f"ignore this {ATTACK} {IMG_ATTACK}")
    expect(page.get_by_text(ATTACK, exact=False).first).to_be_visible()
    assert not [v for v in violations if "pwned" in v]


def test_empty_store_shows_how_to_record_a_first_trace(viewer: Callable[[], str], page: Page) -> None:
    page.goto(viewer())
    empty = page.locator("#empty-state")
    expect(empty).to_be_visible()
    expect(empty).to_contain_text("No traces yet")
    expect(empty).to_contain_text("lunatrace demo")
    expect(empty).to_contain_text(str(lunatrace.get_tracer().config.store_path))
    expect(page.locator("table.lt-list")).to_have_count(0)


# WCAG contrast ratio between an element's text colour and the page background.
CONTRAST = """(selector) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = rgb(c).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const fg = getComputedStyle(document.querySelector(selector)).color;
  const bg = getComputedStyle(document.body).backgroundColor;
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_readable_in_light_and_dark(scheme: str, viewer: Callable[[], str], page: Page) -> None:
    record()
    url = viewer()
    page.emulate_media(color_scheme=scheme)
    page.goto(url)
    page.locator("table.lt-list tbody tr").nth(1).get_by_role("link").click()
    expect(page).to_have_title("lunatrace · failing-job")
    expect(page.locator(".lt-status.lt-error").first).to_be_visible()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(255, 255, 255)") == (scheme == "light")
    for selector, minimum in ((".lt-name", 7.0), (".lt-title", 7.0), (".lt-status.lt-error", 3.0)):
        assert page.evaluate(CONTRAST, selector) >= minimum, (scheme, selector)


def test_a_paused_and_resumed_graph_reads_as_one_story(
    viewer: Callable[[], str], page: Page, tmp_path: Path
) -> None:
    paused, _ = pause_and_resume("browser-hitl")
    lunatrace.flush()

    page.goto(viewer())
    expect(page.locator("table.lt-list tbody tr")).to_have_count(1)  # one story, not two traces
    page.get_by_role("link", name="approval").click()
    expect(page.locator(".lt-badge-interrupted")).to_have_count(2)  # the root, and the node that asked
    link = page.get_by_role("link", name="resumes ↑")
    expect(link).to_be_visible()
    page.screenshot(path=str(tmp_path / "paused-and-resumed.png"), full_page=True)
    link.click()
    expect(page).to_have_url(re.compile(f"#run-{paused}$"))
    expect(page.locator(f"#run-{paused} > summary .lt-badge-interrupted")).to_be_visible()
