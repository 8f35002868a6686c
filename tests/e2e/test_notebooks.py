"""Every notebook runs top to bottom offline, and its inline views show every run.

Each notebook is executed with nbclient in a kernel running this very interpreter (a
kernelspec written to a temporary ``JUPYTER_PATH``), with the store in a temporary file.
The HTML each ``lunatrace.show()`` displayed is compared with the trace in that store.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from lunatrace.core.transport.store import EventStore
from lunatrace.view.load import load_trace

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
KERNEL = "lunatrace-test-python"


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec for this interpreter, so notebooks run against this environment."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "lunatrace tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return KERNEL


def test_expected_notebooks_are_stored_without_outputs() -> None:
    assert NAMES == [
        "01_langchain_quickstart.ipynb",
        "02_langgraph_agent.ipynb",
        "03_llama_index.ipynb",
        "04_threads_users_feedback.ipynb",
        "05_offline_store_and_push.ipynb",
        "06_anthropic.ipynb",
        "07_openai.ipynb",
    ]
    for name in NAMES:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name
        text = "\n".join(cell.source for cell in notebook.cells)
        assert "lunatrace.show(" in text, name
        assert "LUNARY_PUBLIC_KEY" in text, name  # says how to point it at a real server


def inline_views(notebook: nbformat.NotebookNode) -> list[str]:
    """The HTML of every trace view the notebook displayed."""
    views = []
    for cell in notebook.cells:
        in_cell = []
        for output in cell.get("outputs", []):
            html = output.get("data", {}).get("text/html")
            if html and 'class="lt-trace"' in html:
                in_cell.append(html if isinstance(html, str) else "".join(html))
        assert len(in_cell) <= 1, f"a trace shown twice: {cell.source!r}"
        views.extend(in_cell)
    return views


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_and_shows_every_run(name: str, kernel_name: str, tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=kernel_name,
        timeout=180,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{name}: {output.get('ename')}: {output.get('evalue')}"
            if output.output_type == "stream":
                assert "Traceback" not in output.text, f"{name}: {output.text}"

    views = inline_views(notebook)
    shows = sum(cell.source.count("lunatrace.show(") for cell in notebook.cells if cell.cell_type == "code")
    assert len(views) == shows, f"{name}: {shows} show() calls but {len(views)} views"
    store = EventStore(Path(_store_path()))
    try:
        for html in views:
            trace_id = re.search(r'class="lt-trace" data-trace-id="([^"]+)"', html)
            assert trace_id is not None
            trace = load_trace(store, trace_id.group(1))
            shown = re.findall(r'<details class="lt-run" data-run-id="([^"]+)"', html)
            assert shown == [run.id for run, _ in trace.walk()], f"{name}: runs missing from the view"
            assert len(shown) >= 1
            for run, _ in trace.walk():
                assert f'data-run-type="{run.type}"' in html
    finally:
        store.close()


def _store_path() -> str:
    return os.environ["LUNATRACE_STORE"]
