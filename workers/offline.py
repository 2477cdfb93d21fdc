"""The worker's SQLite journal: what it owes the server.

Every outcome is written here *before* it is reported and deleted only once the server
has accepted or rejected it, so a worker killed at any point (or cut off from the
network) loses no outcome: on restart it syncs the journal before claiming anything.
Tasks created by handlers are journaled the same way and pushed with their idempotency
key, so a re-sent creation is deduplicated by the server.

WAL with ``synchronous=NORMAL``: a committed entry survives the process being killed
(kill -9); only an OS crash or power loss can drop the last commits, and then the task's
lease expires and it is retried — at-least-once still holds.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    task_id TEXT PRIMARY KEY, queue TEXT NOT NULL, token TEXT NOT NULL,
    succeeded INTEGER NOT NULL, result TEXT NOT NULL, error TEXT NOT NULL,
    retry_delay_ms INTEGER, started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS created (
    idempotency_key TEXT PRIMARY KEY, body TEXT NOT NULL, seq INTEGER NOT NULL
);
"""


class Report(NamedTuple):
    """The outcome of one attempt, as journaled and reported (a named tuple for the
    reason given at ``chalicelib.models.Lease``)."""

    task_id: str
    queue: str
    token: str
    succeeded: bool
    result_json: str = "null"
    error: str = ""
    #: a retry delay the handler asked for (``Retry(delay_seconds)``); None: the backoff
    retry_delay_ms: int | None = None
    started_ms: int = 0
    finished_ms: int = 0

    def row(self) -> tuple[Any, ...]:
        return (self.task_id, self.queue, self.token, int(self.succeeded), self.result_json,
                self.error, self.retry_delay_ms, self.started_ms, self.finished_ms)  # fmt: skip


class Journal:
    """Thread-safe: the run loop, the heartbeat thread and handlers all write to it."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")  # two workers may share a journal
        self._db.executescript(_SCHEMA)
        # Ids with a journaled outcome, so the run loop never runs such a task again
        # (checked per claimed task, so it must be a set lookup, not a query).
        self._owed = {r[0] for r in self._db.execute("SELECT task_id FROM outcomes")}
        self._seq = self._db.execute("SELECT coalesce(max(seq), 0) FROM created").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- outcomes ------------------------------------------------------------------

    def add(self, reports: Sequence[Report]) -> None:
        """Journal outcomes in one transaction (durable when this returns)."""
        if not reports:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO outcomes VALUES (?,?,?,?,?,?,?,?,?)",
                [r.row() for r in reports],
            )
            self._db.execute("COMMIT")
            self._owed.update(r.task_id for r in reports)

    def owes(self, task_id: str) -> bool:
        """True when an outcome of this task is journaled and not yet settled."""
        return task_id in self._owed

    def pending(self, limit: int = 500) -> list[Report]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM outcomes ORDER BY finished_ms LIMIT ?", (limit,)
            ).fetchall()
        return [Report(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7], r[8]) for r in rows]

    def settle(self, task_ids: Iterable[str]) -> None:
        """The server accepted or rejected these outcomes: forget them."""
        ids = [(t,) for t in task_ids]
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM outcomes WHERE task_id = ?", ids)
            self._db.execute("COMMIT")
            self._owed.difference_update(t for (t,) in ids)

    def count(self) -> int:
        return len(self._owed)

    # -- tasks created by handlers ----------------------------------------------------

    def add_created(self, idempotency_key: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            self._db.execute(
                "INSERT OR IGNORE INTO created VALUES (?,?,?)",
                (idempotency_key, json.dumps(body, separators=(",", ":")), self._seq),
            )

    def pending_created(self, limit: int = 500) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM created ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def settle_created(self, keys: Iterable[str]) -> None:
        rows = [(k,) for k in keys]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM created WHERE idempotency_key = ?", rows)
            self._db.execute("COMMIT")

    def count_created(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM created").fetchone()[0])
