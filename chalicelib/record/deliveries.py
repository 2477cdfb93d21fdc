"""The notification outbox in Postgres: which webhook and SNS deliveries are due, and
every attempt made (shown in the task's history).

The recorder schedules deliveries in the same statement that records a batch
(``record_events`` in ``sql/queries.sql``), so a delivery is scheduled exactly when its
transition is in the record: a replayed batch hits the ``(task, seq, channel)`` key and
schedules nothing twice. Notifiers (``chalicelib.service.notify``) claim due rows with SKIP
LOCKED, so any number of them share the work and a crashed one only delays its rows by
one lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.core.clock import iso
from chalicelib.record.sql import q
from chalicelib.record.store import Row, Store

WEBHOOK, SNS = "webhook", "sns"


@dataclass(frozen=True)
class Delivery:
    """One claimed delivery attempt."""

    id: int
    task_id: str
    channel: str
    event: str  #: task.succeeded, task.retrying, task.dead
    target: str | None  #: the webhook URL
    task: dict[str, Any]  #: the task as of its transition
    at: datetime  #: when the transition happened
    attempt: int  #: this attempt's number, from 1


@dataclass(frozen=True)
class Attempt:
    """What one attempt did: ``ok``, or why not."""

    ok: bool
    status_code: int | None = None
    error: str | None = None


class Deliveries:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- the notifier's side -------------------------------------------------------

    def claim(self, limit: int, lease_s: float, channel: str | None = None) -> list[Delivery]:
        """Due deliveries, each hidden from other notifiers for ``lease_s``."""
        params = {"limit": limit, "lease_s": lease_s, "channel": channel}
        with self.store.connection() as conn:
            rows = conn.execute(q("claim_deliveries"), params).fetchall()
        return [_delivery(r) for r in rows]

    def finish(self, d: Delivery, attempt: Attempt | None, state: str, delay_s: float) -> None:
        """Log the attempt (None: none was made) and move the delivery to ``state``
        (``pending`` again after ``delay_s``, ``delivered``, ``failed``, ``skipped``)."""
        with self.store.connection() as conn, conn.transaction():
            if attempt is not None:
                conn.execute(
                    q("insert_delivery_attempt"),
                    {
                        "id": d.id,
                        "attempt": d.attempt,
                        "ok": attempt.ok,
                        "status_code": attempt.status_code,
                        "error": attempt.error,
                    },
                )
            conn.execute(
                q("finish_delivery"),
                {"id": d.id, "attempt": d.attempt, "state": state, "delay_s": delay_s},
            )

    # -- reads ---------------------------------------------------------------------

    def history(self, task_id: str) -> list[dict[str, Any]]:
        """Every attempt, as ``GET /tasks/{id}`` history events, oldest first."""
        with self.store.connection() as conn:
            rows = conn.execute(q("delivery_history"), {"id": task_id}).fetchall()
        return [_history_event(r) for r in rows]

    def of_task(self, task_id: str) -> list[Row]:
        with self.store.connection() as conn:
            return conn.execute(q("task_deliveries"), {"id": task_id}).fetchall()

    # -- queue defaults (PATCH /queues/{name} "webhook_url") -------------------------

    def set_queue_webhook(self, queue: str, url: str | None) -> None:
        """Set (or with None remove) the webhook of tasks of ``queue`` that have none."""
        with self.store.connection() as conn:
            if url is None:
                conn.execute(q("delete_queue_webhook"), {"queue": queue})
            else:
                conn.execute(q("set_queue_webhook"), {"queue": queue, "url": url})

    def queue_webhooks(self, queues: Sequence[str] | None = None) -> dict[str, str]:
        """Queue → default webhook URL (of ``queues``, or of every queue)."""
        params = {"queues": None if queues is None else list(queues)}
        with self.store.connection() as conn:
            rows = conn.execute(q("queue_webhooks"), params).fetchall()
        return {r["queue"]: r["url"] for r in rows}


def _delivery(r: Row) -> Delivery:
    return Delivery(
        id=r["id"],
        task_id=str(r["task_id"]),
        channel=r["channel"],
        event=r["event"],
        target=r["target"],
        task=r["task"],
        at=r["at"],
        attempt=r["attempts"],
    )


_NAMES = {
    (WEBHOOK, True): "webhook_delivered",
    (WEBHOOK, False): "webhook_failed",
    (SNS, True): "sns_published",
    (SNS, False): "sns_failed",
}


def _history_event(r: Row) -> dict[str, Any]:
    error = r["error"]
    if error is None and r["status_code"] is not None and not r["ok"]:
        error = f"HTTP {r['status_code']}"
    return {
        "at": iso(r["at"]),
        "event": _NAMES[(r["channel"], r["ok"])],
        "attempt": int(r["task"].get("attempts") or 0),
        "worker_id": None,
        "error": error,
        "delivery": {"event": r["event"], "attempt": r["attempt"], "status_code": r["status_code"]},
    }


def merge_history(
    events: list[dict[str, Any]], deliveries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Task events (in transition order) and delivery attempts, merged by time; the
    transition order is kept as it is even if the clock disagrees."""
    if not deliveries:
        return events
    out: list[dict[str, Any]] = []
    i = 0
    for e in events:
        while i < len(deliveries) and deliveries[i]["at"] < e["at"]:
            out.append(deliveries[i])
            i += 1
        out.append(e)
    return out + deliveries[i:]
