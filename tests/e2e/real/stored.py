"""What the real server stored, in the forms the end-to-end tests compare.

A trace is compared as a *shape*: nested ``(type, name, children)`` tuples with siblings
sorted, because the server orders rows by millisecond timestamps that siblings can
share. The same shape is built from what a framework reports (LlamaIndex's spans or
callback events), so a stored tree is checked against the framework's own tree, not
against a copy of lunatrace's mapping. Run ids are compared exactly wherever a test can
learn them (``lunatrace.current_run_id()``, message ids); lunatrace gives framework runs
UUIDs of its own, so there the tree shape is what ties rows to the framework.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import lunatrace
from tests.support.real_lunary import Project, RealLunary

Row = dict[str, Any]
Tree = tuple[tuple[str, str | None, "Tree"], ...]
Node = tuple[str, str | None, str, str | None]  # id, parent id, type, name


def current_run() -> str:
    """The id of the run the caller is in, as lunatrace sees it (there must be one)."""
    run_id = lunatrace.current_run_id()
    assert run_id is not None, "not inside a traced run"
    return run_id


def stored_runs(server: RealLunary, project: Project, timeout: float = 60.0) -> list[Row]:
    """Flush lunatrace, then every row the server stored for ``project``.

    The server answers a request only once each of its events is written, so rows read
    after a successful flush are final.
    """
    assert lunatrace.flush(timeout), f"lunatrace did not deliver its events within {timeout} s"
    return server.runs(project)


def shape(nodes: Iterable[Node]) -> Tree:
    """The forest of ``nodes`` as a canonical nested tuple; a parent must be a node or ``None``."""
    nodes = list(nodes)
    ids = {node[0] for node in nodes}
    children: dict[str | None, list[Node]] = defaultdict(list)
    for node in nodes:
        assert node[1] is None or node[1] in ids, f"{node[2]} {node[3]} has a parent that is not there"
        children[node[1]].append(node)

    def build(parent: str | None) -> Tree:
        branches = ((kind, name, build(node_id)) for node_id, _, kind, name in children[parent])
        return tuple(sorted(branches, key=repr))

    return build(None)


def row_shape(rows: Iterable[Row]) -> Tree:
    """The stored run trees (every parent must be stored too: nothing dangles)."""
    return shape((row["id"], row["parent_run_id"], row["type"], row["name"]) for row in rows)


def only(rows: Iterable[Row], **match: Any) -> Row:
    """The one row whose columns equal ``match``."""
    found = [row for row in rows if all(row[key] == value for key, value in match.items())]
    assert len(found) == 1, f"{len(found)} rows match {match}: {[(r['type'], r['name']) for r in found]}"
    return found[0]


def assert_finished(rows: Iterable[Row], status: str = "success") -> None:
    """Each run ended with ``status``, after it started (a run never ended stays 'started')."""
    for row in rows:
        assert row["status"] == status, f"{row['type']} {row['name']}: {row['status']} ({row['error']})"
        assert row["ended_at"] is not None and row["ended_at"] >= row["created_at"], row["name"]


def users_of(server: RealLunary, rows: Iterable[Row]) -> set[str | None]:
    """The application's user ids the rows are attributed to."""
    return {server.external_user(row["external_user_id"]) for row in rows}
