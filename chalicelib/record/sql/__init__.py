"""Named SQL queries, kept as data in ``queries.sql``.

Each query starts with a ``-- name: <name>`` line followed by ``-- <description>``
lines. Queries are typed ``LiteralString`` so that SQL built at run time cannot slip in;
values always travel as parameters.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString

_NAME_RE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def queries() -> dict[str, LiteralString]:
    text = (resources.files(__package__) / "queries.sql").read_text(encoding="utf-8")
    parts = _NAME_RE.split(text)
    found: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        sql = "\n".join(line for line in body.splitlines() if not line.startswith("--")).strip()
        found[name] = sql
    return found


def q(name: str) -> LiteralString:
    """The SQL of one named query (KeyError for a typo, found by the tests)."""
    return queries()[name]


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration file, in order."""
    folder = resources.files(__package__) / "migrations"
    found = []
    for entry in folder.iterdir():
        m = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found)
