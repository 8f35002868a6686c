"""Regenerate ``lunatrace/core/pricing_data.py`` from the Lunary server's own price table.

The server keeps its prices in the ``model_mapping`` table, which its SQL migrations
create and fill (``src/packages/db/*.sql``), and falls back on a fixed list in
``src/packages/backend/src/utils/cost.ts`` (``MODEL_COSTS``) when no row matches. This
script replays every ``insert``/``update``/``delete`` of ``model_mapping`` from those
migrations, in their order, into an in-memory SQLite table, reads the fallback list, and
writes both as Python data, ordered the way the server tries them. Nothing is typed by
hand: a price only ever comes from the server's source.

Usage::

    python scripts/update_prices.py [LUNARY_SERVER_DIR]   # default: ../shared/lunary-server

``LUNARY_SERVER_DIR`` holds ``src/`` (a snapshot of the server) and ``UPSTREAM_COMMIT``.
A statement this script cannot replay, or a pattern Python's ``re`` cannot compile,
stops it with an error: the table is never written half right.
"""

from __future__ import annotations

import datetime
import math
import re
import sqlite3
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "lunatrace" / "core" / "pricing_data.py"
DEFAULT_SERVER = REPO.parent / "shared" / "lunary-server"
# The server's default ``start_date`` since migration 0078 (every earlier null became it).
DEFAULT_START = "2020-01-01 00:00:00+00"

_TABLE = """
CREATE TABLE model_mapping (
    name TEXT NOT NULL, pattern TEXT NOT NULL, unit TEXT NOT NULL, input_cost REAL, output_cost REAL,
    tokenizer TEXT, start_date TEXT, org_id TEXT, provider TEXT, input_caching_cost_reduction REAL
)
"""
_WRITES = re.compile(r"^\s*(insert\s+into|update|delete\s+from)\s+model_mapping\b", re.IGNORECASE)
_LEGACY = re.compile(
    r"models:\s*\[([^\]]*)\],\s*inputCost:\s*([0-9.]+),[^\n]*\n\s*outputCost:\s*([0-9.]+)", re.DOTALL
)


def statements(sql: str) -> list[str]:
    """The statements of a migration, split on ``;`` outside quoted strings."""
    out, current, quoted = [], [], False
    for char in sql:
        if char == "'":
            quoted = not quoted
        if char == ";" and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(char)
    out.append("".join(current))
    return [s.strip() for s in out if s.strip()]


def _sqlite_dialect(statement: str) -> str:
    """PostgreSQL's ``DEFAULT`` in a ``VALUES`` list is SQLite's ``NULL`` here (every
    defaulted column of this table defaults to null, or to :data:`DEFAULT_START`)."""
    parts = re.split(r"('(?:[^']|'')*')", statement)
    return "".join(p if p.startswith("'") else re.sub(r"\bDEFAULT\b", "NULL", p, flags=re.I) for p in parts)


def smallint(value: float | None) -> int | None:
    """A number stored in PostgreSQL's ``smallint`` column: rounded half away from zero."""
    if value is None:
        return None
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def mappings(db_dir: Path) -> list[tuple[object, ...]]:
    """Every row of the server's default table, in the order its cost lookup tries them:
    latest ``start_date`` first, ties in the order the migrations inserted them."""
    db = sqlite3.connect(":memory:")
    db.execute(_TABLE)
    for path in sorted(db_dir.glob("*.sql")):
        for statement in statements(path.read_text(encoding="utf-8")):
            if _WRITES.match(statement):
                try:
                    db.execute(_sqlite_dialect(statement))
                except sqlite3.Error as exc:
                    raise SystemExit(f"{path.name}: cannot replay {statement[:80]!r}: {exc}") from None
    rows = db.execute(
        "SELECT name, pattern, unit, input_cost, output_cost, input_caching_cost_reduction, start_date"
        " FROM model_mapping WHERE org_id IS NULL ORDER BY rowid"
    ).fetchall()
    out = []
    for name, pattern, unit, input_cost, output_cost, caching, start in rows:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SystemExit(f"model {name!r}: pattern {pattern!r} is not a Python regex: {exc}") from None
        out.append((name, pattern, unit, input_cost, output_cost, smallint(caching), start_ms(start)))
    out.sort(key=lambda row: -int(str(row[6])))  # stable: ties keep the migrations' order
    return out


def start_ms(text: str | None) -> int:
    """A ``start_date`` as epoch milliseconds (PostgreSQL reads a bare date as midnight UTC)."""
    moment = datetime.datetime.fromisoformat((text or DEFAULT_START).replace("+00", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1000)


def legacy(cost_ts: Path) -> list[tuple[tuple[str, ...], float, float]]:
    """The server's fallback list (USD per 1,000 tokens), in its order."""
    text = cost_ts.read_text(encoding="utf-8")
    found = []
    for models, input_cost, output_cost in _LEGACY.findall(text):
        names = tuple(re.findall(r'"([^"]+)"', models))
        found.append((names, float(input_cost), float(output_cost)))
    if not found:
        raise SystemExit(f"no MODEL_COSTS entries found in {cost_ts}")
    return found


def _literal(value: object) -> str:
    """A Python literal with double-quoted strings (the project's style)."""
    if isinstance(value, tuple):
        inner = ", ".join(_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def render(server: Path, today: str) -> str:
    commit = (server / "UPSTREAM_COMMIT").read_text(encoding="utf-8").strip()
    rows = mappings(server / "src" / "packages" / "db")
    fallback = legacy(server / "src" / "packages" / "backend" / "src" / "utils" / "cost.ts")
    lines = [
        '"""Lunary\'s price table, generated by ``scripts/update_prices.py``: do not edit by hand.',
        "",
        "Source: the Lunary server's ``model_mapping`` table as its SQL migrations",
        "(``src/packages/db/*.sql``) leave it, and its fallback list ``MODEL_COSTS``",
        f"(``src/packages/backend/src/utils/cost.ts``), at upstream commit {commit}.",
        '"""',
        "",
        "# ruff: noqa: E501",
        "",
        f'UPSTREAM_COMMIT = "{commit}"',
        f'GENERATED = "{today}"  # the day this table was read from the server\'s source',
        "",
        "# (name, pattern, unit, input USD per 1M units, output USD per 1M units,",
        "#  cached-input reduction USD per 1M tokens, start date in epoch ms), in the order the server",
        "#  tries them: latest start date first, ties in the order the migrations added them.",
        "MAPPINGS: tuple[tuple[str, str, str, float | None, float | None, int | None, int], ...] = (",
    ]
    lines.extend(f"    {_literal(row)}," for row in rows)
    lines += [
        ")",
        "",
        "# (models, input USD per 1K tokens, output USD per 1K tokens): the server's fallback.",
        "LEGACY: tuple[tuple[tuple[str, ...], float, float], ...] = (",
    ]
    lines.extend(f"    {_literal(entry)}," for entry in fallback)
    lines += [")", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    server = Path(argv[1]) if len(argv) > 1 else DEFAULT_SERVER
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    OUTPUT.write_text(render(server, today), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
