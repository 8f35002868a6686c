"""``lunatrace ui`` in a real headless Chromium: the pages work and traced text never runs.

The viewer runs as the real command in a subprocess over a store recorded by the normal
tracing path; Debian's Chromium is driven by Playwright (``scripts/test.sh`` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
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
    page.get_by_role("button", name="Search").click()
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
def test_readable_in_light_and_dark(
    scheme: str, viewer: Callable[[], str], page: Page, tmp_path: Path
) -> None:
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
    for selector in ("#run-panel h2", "#run-panel .lt-facts"):  # the side panel too
        assert page.evaluate(CONTRAST, selector) >= 3.0, (scheme, selector)
    shoot(page, tmp_path, f"failed-trace-{scheme}")


def test_a_paused_and_resumed_graph_reads_as_one_story(
    viewer: Callable[[], str], page: Page, tmp_path: Path
) -> None:
    paused, _ = pause_and_resume("browser-hitl")
    lunatrace.flush()

    page.goto(viewer())
    expect(page.locator("table.lt-list tbody tr")).to_have_count(1)  # one story, not two traces
    page.get_by_role("link", name="approval").click()
    expect(page.locator(".lt-tree .lt-badge-interrupted")).to_have_count(
        2
    )  # the root, and the node that asked
    expect(page.locator("#run-panel .lt-badge-interrupted")).to_have_count(1)  # the root, beside the tree
    link = page.get_by_role("link", name="resumes ↑")
    expect(link).to_be_visible()
    page.screenshot(path=str(tmp_path / "paused-and-resumed.png"), full_page=True)
    link.click()
    expect(page).to_have_url(re.compile(f"#run-{paused}$"))
    expect(page.locator(f"#run-{paused} > summary .lt-badge-interrupted")).to_be_visible()


def shoot(page: Page, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot under the test's directory, also copied to the folder
    ``LUNATRACE_TEST_SCREENSHOTS`` names, when set, to be looked at after the run."""
    path = tmp_path / "shots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    if folder := os.environ.get("LUNATRACE_TEST_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)
    return path


QUESTIONS = (
    ("What is the refund policy?", "Refunds are accepted within 30 days."),
    ("How do I reset my password?", "Use the 'Forgot password' link on the sign-in page."),
    ("Which plans include SSO?", "SSO is part of the Business and Enterprise plans."),
    ("Can I export my data?", "Yes: Settings → Export gives a CSV of everything."),
)


@lunatrace.trace(type="chain", name="RunnableSequence")
def answer(question: str, reply: str, cost: float | None = None) -> str:
    """A chain around one llm call (gpt-4o-mini, usage reported): what every LangChain
    pipeline looks like in a list that shows only names. ``cost``: the application's own."""
    tracer = lunatrace.get_tracer()
    prompt = [{"role": "user", "content": question}]
    llm = tracer.start_run("llm", "gpt-4o-mini", prompt, params={"temperature": 0.2})
    time.sleep(0.02)  # a real call takes time; the server prices calls under 10 ms at nothing
    usage = {"prompt": 1200, "completion": 300}
    metadata = None if cost is None else {"cost": cost}
    tracer.end_run(llm, {"role": "assistant", "content": reply}, usage=usage, metadata=metadata)
    return reply


@lunatrace.trace(type="chain", name="RunnableSequence")
def broken(question: str) -> None:
    raise TimeoutError(f"the vector store timed out on {question!r}")


def record_support_day() -> None:
    for question, reply in QUESTIONS:
        answer(question, reply)
    try:
        broken("Where is my invoice?")
    except TimeoutError:
        pass
    answer("Is there a student discount?", "Yes, 50% with a school address.", cost=0.25)
    lunatrace.flush()


def test_the_list_says_what_each_trace_was_with_tokens_and_cost(
    viewer: Callable[[], str], page: Page, tmp_path: Path
) -> None:
    record_support_day()
    page.goto(viewer())
    rows = page.locator("table.lt-list tbody tr")
    expect(rows).to_have_count(6)
    headings = page.locator("table.lt-list thead th").all_inner_texts()
    assert [h.lower() for h in headings[:4]] == ["started (utc)", "name", "input → output", "status"]
    assert headings[6].lower() == "tokens\nprompt + completion"
    previews = rows.locator("td.lt-io").all_inner_texts()
    assert previews[0] == "Is there a student discount?\n→ Yes, 50% with a school address."
    assert (
        previews[1]
        == "Where is my invoice?\n→ TimeoutError: the vector store timed out on 'Where is my invoice?'"
    )
    assert previews[5] == "What is the refund policy?\n→ Refunds are accepted within 30 days."
    assert len(set(previews)) == 6  # six rows named RunnableSequence, each one told apart
    expect(rows.nth(5).locator("td.lt-tokens")).to_have_text("1200 + 300")
    # gpt-4o-mini in Lunary's table: 0.15 and 0.60 USD per million prompt and completion tokens
    cost = rows.nth(5).locator(".lt-cost")
    expect(cost).to_have_text("~$0.00036")
    expect(cost).to_have_attribute(
        "title", re.compile(r"^estimated from Lunary's price table of \d{4}-\d\d-\d\d$")
    )
    expect(rows.nth(0).locator(".lt-cost")).to_have_text("$0.25")  # metadata.cost wins, and is not "~"
    expect(rows.nth(1).locator(".lt-cost")).to_have_count(0)  # failed before any llm call: no cost, not $0
    expect(page.locator(".lt-note")).to_contain_text("~$: estimated from Lunary's price table")
    shoot(page, tmp_path, "list-columns")


def test_search_and_filters_are_kept_across_pages_and_refresh(
    viewer: Callable[[], str], page: Page, tmp_path: Path
) -> None:
    record_support_day()
    for n in range(30):  # more than a page of matches
        answer(f"refund request #{n}", "Refunds are accepted within 30 days.")
    lunatrace.flush()
    url = viewer()
    page.goto(url)
    box = page.get_by_role("searchbox", name="search")
    box.fill("refund")
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"[?&]q=refund(&|$)"))
    expect(page.locator(".lt-pager")).to_contain_text("page 1 of 2 · 31 traces")
    page.get_by_role("link", name="older →").click()
    expect(page.locator(".lt-pager")).to_contain_text("page 2 of 2")
    expect(page.get_by_role("searchbox", name="search")).to_have_value("refund")
    expect(page.locator("table.lt-list tbody tr")).to_have_count(6)
    expect(page.locator("table.lt-list tbody tr").last).to_contain_text("What is the refund policy?")
    page.get_by_role("link", name="refresh every 5 s").click()
    expect(page).to_have_url(re.compile(r"q=refund.*page=2.*refresh=5|refresh=5.*q=refund"))
    expect(page.locator('meta[http-equiv="refresh"]')).to_have_count(1)
    expect(page.get_by_role("searchbox", name="search")).to_have_value("refund")

    page.goto(url)
    page.get_by_role("searchbox", name="search").fill('"sign-in page"')  # a phrase, in an output
    page.get_by_label("with errors").check()
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#no-match")).to_be_visible()  # the password answer has no error
    page.get_by_role("searchbox", name="search").fill("invoice")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table.lt-list tbody tr")).to_have_count(1)
    expect(page.locator("table.lt-list tbody tr")).to_contain_text("timed out")
    expect(page.get_by_label("with errors")).to_be_checked()
    shoot(page, tmp_path, "search-errors")

    page.get_by_label("with errors").uncheck()
    page.get_by_role("searchbox", name="search").fill("")
    page.get_by_label("since").fill("1h")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".lt-pager")).to_contain_text("36 traces")
    page.get_by_label("until").fill("2h")  # before any of them
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#no-match")).to_be_visible()
    page.get_by_label("until").fill("next tuesday")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("until: cannot read 'next tuesday' as a time")
    expect(page.locator(".lt-pager")).to_contain_text("36 traces")  # the unread filter is left out


def test_all_traces_returns_to_the_list_the_trace_was_opened_from(
    viewer: Callable[[], str], page: Page
) -> None:
    """A trace opened from a searched list's second page, a run picked in it, the page set
    to refresh: "← all traces" still returns to that search and page, not the whole list."""
    record_support_day()
    for n in range(30):
        answer(f"refund request #{n}", "Refunds are accepted within 30 days.")
    lunatrace.flush()
    page.goto(viewer() + "?q=refund&page=2")
    page.locator("table.lt-list tbody tr").last.get_by_role("link", name="RunnableSequence").click()
    expect(page.locator("#run-panel h2")).to_contain_text("RunnableSequence")
    page.locator(".lt-tree").get_by_role("link", name="gpt-4o-mini").click()
    expect(page.locator("#run-panel h2")).to_contain_text("gpt-4o-mini")
    page.get_by_role("link", name="refresh every 5 s").click()
    expect(page.locator('meta[http-equiv="refresh"]')).to_have_count(1)

    page.get_by_role("link", name="← all traces").click()
    expect(page.get_by_role("searchbox", name="search")).to_have_value("refund")
    expect(page.locator(".lt-pager")).to_contain_text("page 2 of 2 · 31 traces")
    expect(page.locator("table.lt-list tbody tr").last).to_contain_text("What is the refund policy?")


def test_clicking_a_run_shows_its_details_in_a_panel_beside_the_tree(
    viewer: Callable[[], str], page: Page, tmp_path: Path
) -> None:
    record_support_day()
    url = viewer()
    page.goto(url)
    page.locator("table.lt-list tbody tr").last.get_by_role("link", name="RunnableSequence").click()
    panel = page.locator("#run-panel")
    expect(panel.locator("h2")).to_contain_text("RunnableSequence")  # the root, until a run is picked
    tree_box, panel_box = page.locator(".lt-tree").bounding_box(), panel.bounding_box()
    assert tree_box and panel_box and panel_box["x"] >= tree_box["x"] + tree_box["width"]  # beside it

    page.get_by_role("link", name="gpt-4o-mini").click()
    llm = page.locator('details.lt-run[data-run-type="llm"]')
    llm_id = llm.get_attribute("data-run-id")
    expect(page).to_have_url(re.compile(rf"\?run={llm_id}#run-{llm_id}$"))
    expect(panel.locator("h2")).to_contain_text("gpt-4o-mini")
    expect(panel).to_contain_text("tokens 1200 prompt + 300 completion")
    expect(panel).to_contain_text("cost ~$0.00036 (estimated from Lunary's price table of")
    expect(panel.locator(".lt-msg.lt-r-user")).to_contain_text("What is the refund policy?")
    expect(panel.locator(".lt-msg.lt-r-assistant")).to_contain_text("Refunds are accepted within 30 days.")
    expect(panel.locator(".lt-sec", has_text="params")).to_contain_text('"temperature": 0.2')
    expect(llm).to_have_attribute("aria-current", "true")
    shoot(page, tmp_path, "side-panel")

    # deep link: the address alone opens the same run
    page.goto(page.url)
    expect(panel).to_have_attribute("data-run-id", llm_id or "")

    # keyboard only: tab to the root's name and press Enter
    root = page.locator("details.lt-run").first.get_by_role("link", name="RunnableSequence")
    page.locator("body").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        if root.evaluate("el => el === document.activeElement"):
            break
    page.keyboard.press("Enter")
    expect(panel.locator("h2")).to_contain_text("RunnableSequence")
    expect(panel.locator(".lt-below")).to_have_text(
        "with everything below it: 2 runs · tokens 1200 prompt + 300 completion · cost ~$0.00036"
    )

    page.goto(url)
    page.locator("table.lt-list tbody tr").nth(1).get_by_role("link").click()
    expect(panel.locator("pre.lt-error")).to_contain_text("TimeoutError: the vector store timed out")
    shoot(page, tmp_path, "side-panel-error")
