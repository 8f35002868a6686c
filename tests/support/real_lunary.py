"""The real Lunary server (its open-source backend and PostgreSQL) for end-to-end tests.

``../shared/lunary-server/server.sh`` (beside the repository) installs and runs it on
127.0.0.1; this module starts it once per test session under a ``LUNARY_HOME`` of its own
in the temp directory (kept between runs, so only the first run pays for the install),
makes one project per test so that results never mix, and reads what the server stored
straight from its database.

A missing prerequisite is an error that says what to install, never a skip.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SERVER_DIR = Path(os.environ.get("LUNATRACE_LUNARY_SERVER_DIR", REPO.parent / "shared" / "lunary-server"))
HOME_ROOT = Path(
    os.environ.get("LUNATRACE_TEST_LUNARY_HOME", Path(tempfile.gettempdir()) / "lunatrace-tests")
)

RUN_COLUMNS = (
    "id, parent_run_id, type, name, status, tags, input, output, error, params, metadata,"
    " prompt_tokens, completion_tokens, cost, created_at, ended_at, feedback, runtime,"
    " template_version_id, external_user_id"
)


class RealServerError(RuntimeError):
    """The real server could not be started or read; the message says what to do."""


def _env_lines(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.isidentifier():
            values[name] = value
    return values


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@dataclass(frozen=True)
class Project:
    """One project of the real server: its public key and id."""

    key: str
    project_id: str


class RealLunary:
    """A running real server: its URL, its database, and a project per test."""

    def __init__(self, name: str = "main", *, max_requests_per_minute: int | None = None) -> None:
        self.home = HOME_ROOT / name
        self.max_requests_per_minute = max_requests_per_minute
        self.url = ""
        self.db_url = ""
        self.log_path = self.home / "backend.log"

    # --- lifecycle --------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 900) -> str:
        script = SERVER_DIR / "server.sh"
        if not script.is_file():
            raise RealServerError(
                f"the real Lunary server is missing: no {script}. The tests need the shared/ folder "
                "beside the repository (shared/lunary-server/), or LUNATRACE_LUNARY_SERVER_DIR naming it."
            )
        env = {**os.environ, "LUNARY_HOME": str(self.home)}
        if self.max_requests_per_minute is not None:
            env["MAX_REQUESTS_PER_MINUTE"] = str(self.max_requests_per_minute)
        for tool in ("curl", "npm", "psql") if args[0] == "up" else ():
            if tool != "psql" and shutil.which(tool) is None:
                raise RealServerError(
                    f"`{tool}` is not installed; the real Lunary server needs it "
                    "(apt-get install curl npm; PostgreSQL is installed by server.sh)"
                )
        done = subprocess.run(
            ["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RealServerError(
                f"`server.sh {' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
        return done.stdout

    @contextmanager
    def _locked(self) -> Iterator[Path]:
        """The server's users folder, with starting and stopping serialised across processes."""
        users = self.home / "users"
        users.mkdir(parents=True, exist_ok=True)
        with open(self.home / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield users

    def start(self) -> RealLunary:
        """Start the server (or join the one already running there) for this process."""
        with self._locked() as users:
            (users / str(os.getpid())).touch()
            values = _env_lines(self._run("up"))
        self.url = values["LUNARY_API_URL"]
        self.db_url = values["LUNARY_DB_URL"]
        return self

    def stop(self) -> None:
        """Stop the server unless another live process (a test session) still uses it."""
        with self._locked() as users:
            (users / str(os.getpid())).unlink(missing_ok=True)
            for user in users.iterdir():
                if user.name.isdigit() and _alive(int(user.name)):
                    return
                user.unlink(missing_ok=True)
            self._run("down", timeout=120)

    # --- projects and what was stored -------------------------------------------------

    def new_project(self, name: str | None = None) -> Project:
        values = _env_lines(self._run("key", name or f"test-{uuid.uuid4().hex[:12]}", timeout=60))
        return Project(values["LUNARY_PUBLIC_KEY"], values["LUNARY_PROJECT_ID"])

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.db_url, autocommit=True, row_factory=dict_row) as conn:
            return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]

    def runs(self, project: Project) -> list[dict[str, Any]]:
        """Every run the server stored for ``project``, oldest first, ids as strings."""
        rows = self.query(
            f"select {RUN_COLUMNS} from run where project_id = %s order by created_at, id",
            project.project_id,
        )
        for row in rows:
            for key in ("id", "parent_run_id", "external_user_id"):
                if row[key] is not None:
                    row[key] = str(row[key])
        return rows

    def external_user(self, external_user_id: str | None) -> str | None:
        """The user id an application gave, for a run's ``external_user_id``."""
        if external_user_id is None:
            return None
        rows = self.query("select external_id from external_user where id = %s", int(external_user_id))
        return str(rows[0]["external_id"]) if rows else None

    def wait_for_runs(
        self,
        project: Project,
        ready: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Poll the stored runs until ``ready(runs)``; the last rows either way."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.runs(project)
            if ready(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)
