"""The epoch of fences and versions in the record (``dtq_epoch``, ``dtq_redis_runs``;
migration 0005). Why there is one, and when it is raised: chalicelib/service/epoch.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.record.sql import q
from chalicelib.record.store import Store

#: Given (the record's epoch, whether any Redis server was seen before, the server
#: processes seen now for the first time): why the epoch must be raised, or None.
Decide = Callable[[int, bool, list[str]], str | None]


class EpochRecord:
    def __init__(self, store: Store) -> None:
        self.store = store

    def note_servers(self, runs: list[str], decide: Decide) -> tuple[int, str | None]:
        """Note the Redis server processes ``runs`` and, in the same transaction (the
        epoch row locked, so concurrent checks raise once), raise the epoch if ``decide``
        gives a reason. Returns the epoch and that reason."""
        with self.store.connection() as conn, conn.transaction():
            epoch = _locked_epoch(conn)
            seen_before = conn.execute(q("any_redis_run")).fetchone() is not None
            new = [r for r in runs if _note_run(conn, r, epoch)]
            reason = decide(epoch, seen_before, new)
            if reason is not None:
                epoch = _raise(conn, reason)
        return epoch, reason

    def raise_epoch(self, reason: str) -> int:
        with self.store.connection() as conn, conn.transaction():
            _locked_epoch(conn)
            return _raise(conn, reason)


def _locked_epoch(conn: Any) -> int:
    conn.execute(q("ensure_epoch"))
    row = conn.execute(q("lock_epoch")).fetchone()
    return int(row["epoch"])


def _note_run(conn: Any, run_id: str, epoch: int) -> bool:
    found = conn.execute(q("note_redis_run"), {"run_id": run_id, "epoch": epoch}).fetchone()
    return found is not None


def _raise(conn: Any, reason: str) -> int:
    return int(conn.execute(q("raise_epoch"), {"reason": reason}).fetchone()["epoch"])
