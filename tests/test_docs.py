"""Every ```python block in README.md and docs/*.md runs as written, offline.

Each block runs in a fresh interpreter (``sys.executable -c``) in an empty temporary
directory, with the store in that directory, no Lunary key in the environment, and
nothing able to leave the machine: the server URL and every proxy point at a closed
local port, with short delivery timeouts. A block that is not meant to run (a signature,
a fragment, an interactive session) is fenced as ```text, ```bash or ```console instead.

The blocks are started a few at a time as soon as the first test needs one, so the whole
file takes the time of the slowest few blocks rather than of all of them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Languages a fence may name: python blocks are run, the others are shown only.
FENCE_LANGUAGES = {"python", "text", "bash", "console"}
BLOCK_TIMEOUT = 60
CLOSED_PORT = "http://127.0.0.1:9"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>\S*)\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, dedented (blocks inside list items count too)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        body: list[str] = []
        end = index + 1
        while end < len(lines) and lines[end].strip() != "```":
            body.append(lines[end])
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path.name}:{index + 1}: a code fence is never closed")
        code = textwrap.dedent("\n".join(body)) + "\n"
        blocks.append(Block(path, index + 1, opening["lang"], code))
        index = end + 1
    return blocks


ALL_BLOCKS = [block for path in DOC_FILES for block in fenced_blocks(path)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.language == "python"]


def offline_env(workdir: Path) -> dict[str, str]:
    """This environment without Lunary keys or lunatrace settings, pointed at nothing."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LUNARY_", "LUNATRACE_", "OPENAI_"))
        and name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env.update(
        {
            "HOME": str(workdir),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LUNATRACE_STORE": str(workdir / "lunatrace" / "events.db"),
            "LUNARY_API_URL": CLOSED_PORT,
            "LUNATRACE_RETRY_TIMEOUT": "0.5",
            "LUNATRACE_HTTP_TIMEOUT": "0.5",
            "LUNATRACE_EXIT_TIMEOUT": "2",
            # Anything that downloads (tiktoken's encodings, a model client) fails at once.
            "HTTP_PROXY": CLOSED_PORT,
            "HTTPS_PROXY": CLOSED_PORT,
            "ALL_PROXY": CLOSED_PORT,
            "NO_PROXY": "127.0.0.1,localhost",
            "HF_HUB_OFFLINE": "1",
        }
    )
    return env


def run_block(block: Block) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="lunatrace-docs-") as tmp:
        workdir = Path(tmp)
        try:
            return subprocess.run(
                [sys.executable, "-c", block.code],
                cwd=workdir,
                env=offline_env(workdir),
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            return subprocess.CompletedProcess(exc.cmd, -1, "", f"timed out after {BLOCK_TIMEOUT}s\n{stderr}")


class _Runs:
    """Every python block, run in the background a few at a time, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[Block, Future[subprocess.CompletedProcess[str]]] = {}

    def result(self, block: Block) -> subprocess.CompletedProcess[str]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=max(2, min(8, (os.cpu_count() or 2) * 2)))
                self._futures = {b: self._pool.submit(run_block, b) for b in PYTHON_BLOCKS}
        return self._futures[block].result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def runs() -> Iterator[_Runs]:
    runner = _Runs()
    yield runner
    runner.close()


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.where for b in PYTHON_BLOCKS])
def test_python_block_runs_offline(block: Block, runs: _Runs) -> None:
    done = runs.result(block)
    if done.returncode != 0:
        pytest.fail(
            f"the python block starting at line {block.line} of {block.path.relative_to(ROOT).as_posix()}"
            f" exited with {done.returncode}\n--- stderr ---\n{done.stderr}",
            pytrace=False,
        )


def test_blocks_are_found_in_every_page() -> None:
    pages_with_python = {b.path.name for b in PYTHON_BLOCKS}
    for page in ("README.md", "python.md", "langchain.md", "llama_index.md", "configuration.md"):
        assert page in pages_with_python, f"no ```python block found in {page}"
    assert len(PYTHON_BLOCKS) >= 30


def test_every_fence_names_a_known_language() -> None:
    """A block fenced ```py, ```pycon or bare would escape this test: name it python or text."""
    unknown = [f"{b.where}: ```{b.language}" for b in ALL_BLOCKS if b.language not in FENCE_LANGUAGES]
    assert unknown == [], "fences must be one of " + ", ".join(sorted(FENCE_LANGUAGES))


def test_offline_environment_has_no_key() -> None:
    env = offline_env(Path("/nonexistent"))
    assert not [name for name in env if name.startswith("LUNARY_") and name != "LUNARY_API_URL"]
    assert env["LUNARY_API_URL"] == CLOSED_PORT
