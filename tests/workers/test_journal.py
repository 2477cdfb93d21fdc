"""The offline journal (SQLite, WAL): what the worker owes the server survives restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chalicelib.core.models import Outcome
from workers.offline import Journal


def report(i: int, ok: bool = True) -> Outcome:
    return Outcome(
        "default",
        f"t{i}",
        f"tok{i}",
        ok,
        f'{{"i": {i}}}',
        "" if ok else "boom",
        None if ok else 250,
        started_ms=1000 + i,
        finished_ms=2000 + i,
    )


def test_outcomes_survive_reopening_until_settled(tmp_path: Path) -> None:
    path = str(tmp_path / "j" / "journal.db")
    journal = Journal(path)
    journal.add([report(1), report(2, ok=False), report(3)])
    assert journal.owes("t2") and journal.count() == 3
    journal.close()

    again = Journal(path)  # a restarted worker
    assert again.owes("t1") and again.owes("t3")
    assert again.pending() == [report(1), report(2, ok=False), report(3)]
    again.settle(["t1", "t2"])
    assert [r.task_id for r in again.pending()] == ["t3"] and not again.owes("t1")
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rejournaling_an_outcome_replaces_it(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path / "j.db"))
    journal.add([report(1)])
    journal.add([Outcome("default", "t1", "newtok", True)])
    assert [r.token for r in journal.pending()] == ["newtok"]


def test_created_tasks_are_kept_in_order_and_deduplicated_by_key(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path / "j.db"))
    journal.add_created("k1", {"name": "a", "idempotency_key": "k1"})
    journal.add_created("k2", {"name": "b", "idempotency_key": "k2"})
    journal.add_created("k1", {"name": "a", "idempotency_key": "k1"})
    assert [b["name"] for b in journal.pending_created()] == ["a", "b"]
    journal.settle_created(["k1"])
    journal.close()
    assert Journal(str(tmp_path / "j.db")).pending_created() == [
        {"name": "b", "idempotency_key": "k2"}
    ]
