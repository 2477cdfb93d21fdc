"""Rebuilds Redis queue state from the Postgres record.

Used by ``dtq recover`` after Redis lost its data and, periodically, by the reconciler
(a task recorded while Redis was unreachable gets dispatched). Only non-terminal tasks
are restored, with their recorded ``run_at``, attempts and fence, so a task that had
finished is never started again and the fence keeps growing.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.client import Client

PAGE = 1000


@dataclass
class Report:
    checked: int = 0
    restored: int = 0


def restore_missing(client: Client, *, page: int = PAGE) -> Report:
    """Restore every non-terminal recorded task that Redis does not hold."""
    report = Report()
    after = "00000000-0000-0000-0000-000000000000"
    while rows := client.store.live_tasks(after, page):
        after = str(rows[-1]["id"])
        live = client.queue.live_many([(r["queue"], str(r["id"])) for r in rows])
        report.checked += len(rows)
        for row, state in zip(rows, live, strict=True):
            if state is None and client.restore(row):
                report.restored += 1
    return report
