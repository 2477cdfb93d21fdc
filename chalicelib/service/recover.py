"""Rebuilds Redis queue state from the Postgres record.

Used by ``dtq recover`` after Redis lost its data and, periodically, by the reconciler
(a task recorded while Redis was unreachable gets dispatched). Only non-terminal tasks
are restored, with their recorded ``run_at``, attempts and fence, so a task that had
finished is never started again; the epoch (chalicelib/service/epoch.py) keeps fences growing
past any the record never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.service.epoch import Epochs
from chalicelib.service.tasks import TaskService

PAGE = 1000


@dataclass
class Report:
    checked: int = 0
    restored: int = 0
    epoch: int | None = None  #: the epoch raised to, when one was


def restore_missing(tasks: TaskService, *, page: int = PAGE) -> Report:
    """Restore every non-terminal recorded task that Redis does not hold, and put the
    queue of every one of them back into the queue registry if Redis forgot it there.

    A missing task that had transitions (version > 0) was in Redis and is gone: Redis
    lost data, maybe leases and fences the record never saw, so the epoch is raised
    (chalicelib/service/epoch.py) before the first such task is restored. A missing task with no
    transition only never reached Redis (its enqueue's Redis step failed)."""
    report = Report()
    after = "00000000-0000-0000-0000-000000000000"
    while rows := tasks.store.live_tasks(after, page):
        after = str(rows[-1]["id"])
        # The registry may have lost queues whose own keys survived (under Cluster it is
        # on another node): recorders and the reaper would never look at them again.
        tasks.queue.remember_queues({r["queue"] for r in rows})
        live = tasks.queue.live_many([(r["queue"], str(r["id"])) for r in rows])
        report.checked += len(rows)
        for row, state in zip(rows, live, strict=True):
            if state is not None:
                continue
            if report.epoch is None and row["version"] > 0:
                report.epoch = Epochs(tasks.queue, tasks.store).raise_epoch(
                    f"task {row['id']} was in Redis and is gone"
                )
            if tasks.restore(row):
                report.restored += 1
    return report


def recover(tasks: TaskService) -> Report:
    """``dtq recover``: Redis lost its data. The record may lag behind what Redis had
    handed out (leases, fences), so the epoch is raised first, unconditionally."""
    epoch = Epochs(tasks.queue, tasks.store).raise_epoch("dtq recover")
    report = restore_missing(tasks)
    report.epoch = epoch
    return report
