"""The task's one JSON view: what ``GET /tasks/{id}``, a create, a list, a claim over HTTP
and a schedule's run return, and the history rows inside it.

A task is shown from one of three sources, and every answer has the same fields in the
same order (:data:`FIELDS`): its record (a PostgreSQL row) overlaid with what Redis
holds when Redis is ahead (:func:`from_record`); a task just created
(:func:`from_new`); a task just leased whose row could not be read
(:func:`from_lease`). History rows come from the record (:func:`recorded_event`), from
the row's own creation (:func:`creation_events`), or from the event stream when the
record has not caught up yet (:func:`stream_event`), so that the status an answer shows
always has its event in the history the same answer shows.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.core.clock import from_ms, iso, iso_ms
from chalicelib.core.models import Backoff, Lease, NewTask
from chalicelib.queue.scripts import REASONS, Code
from chalicelib.queue.taskhash import LiveProgress, LiveTask
from chalicelib.record.store import Row

#: Every task answer's fields, in order.
FIELDS = (
    "id",
    "name",
    "queue",
    "priority",
    "payload",
    "status",
    "attempts",
    "max_attempts",
    "timeout_seconds",
    "backoff",
    "idempotency_key",
    "lock_key",
    "schedule_id",
    "webhook_url",
    "worker_id",
    "cancel_requested",
    "fence",
    "run_at",
    "created_at",
    "started_at",
    "finished_at",
    "result",
    "error",
    "progress",
)


def from_record(row: Row, live: LiveTask | None = None) -> dict[str, Any]:
    """A recorded task; ``live`` (its Redis state) wins where it is newer."""
    task: dict[str, Any] = {
        "id": str(row["id"]),
        "name": row["name"],
        "queue": row["queue"],
        "priority": row["priority"],
        "payload": row["payload"],
        "status": row["status"],
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"],
        "timeout_seconds": row["timeout_seconds"],
        "backoff": row["backoff"],
        "idempotency_key": row["idempotency_key"],
        "lock_key": row["lock_key"],
        "schedule_id": str(row["schedule_id"]) if row["schedule_id"] else None,
        "webhook_url": row["webhook_url"],
        "worker_id": row["worker_id"],
        "cancel_requested": row["cancel_requested"],
        "fence": row["fence"],
        "run_at": iso(row["run_at"]),
        "created_at": iso(row["created_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "result": row["result"],
        "error": row["error"],
        "progress": _recorded_progress(row.get("progress")),
    }
    if live is not None and live.version > row["version"]:
        _overlay(task, live)
    if live is not None and live.progress is not None:
        # The hash always holds the newest report, recorded or not (progress events are
        # throttled and do not change the version when held back).
        task["progress"] = _live_progress(live.progress)
    return task


def row_from_created(event: dict[str, Any]) -> Row:
    """The row a task of a queue of durability "queue" will have once its ``created``
    event is recorded (queries.sql insert_created), read from that event meanwhile."""
    r = event["row"]
    return {
        "id": event["id"],
        "name": r["name"],
        "queue": r["queue"],
        "priority": r["priority"],
        "payload": r["payload"],
        "status": event["st"],
        "attempts": 0,
        "max_attempts": r["max_attempts"],
        "timeout_seconds": r["timeout_seconds"],
        "backoff": r["backoff"],
        "idempotency_key": None,
        "lock_key": r.get("lock_key"),
        "schedule_id": None,
        "webhook_url": r.get("webhook_url"),
        "worker_id": None,
        "cancel_requested": False,
        "fence": 0,
        "run_at": from_ms(int(r["run_at"])),
        "created_at": from_ms(int(r["created_at"])),
        "created_scheduled": event["st"] == "scheduled",
        "started_at": None,
        "finished_at": None,
        "result": None,
        "error": None,
        "progress": None,
        "version": int(event.get("v") or 0),
    }


def _recorded_progress(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """``{"fraction", "message", "at"}`` from the row's column or a history row's data
    (``at`` in ms there)."""
    if not data or data.get("fraction") is None:
        return None
    at = data.get("at")
    return {
        "fraction": float(data["fraction"]),
        "message": data.get("message") or "",
        "at": None if at is None else _iso(int(at)),
    }


def _live_progress(p: LiveProgress) -> dict[str, Any]:
    return {"fraction": p.fraction, "message": p.message, "at": _iso(p.at_ms)}


def _overlay(task: dict[str, Any], live: LiveTask) -> None:
    task["status"] = live.status
    task["attempts"] = live.attempts
    task["fence"] = live.fence
    task["cancel_requested"] = live.cancel_requested
    if live.worker_id is not None:
        task["worker_id"] = live.worker_id
    task["run_at"] = _iso(live.run_at_ms)
    task["started_at"] = _iso(live.started_ms)
    task["finished_at"] = _iso(live.finished_ms)
    task["error"] = live.error
    task["result"] = None if live.result_json is None else json.loads(live.result_json)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso(from_ms(ms))


def from_new(t: NewTask) -> dict[str, Any]:
    """A task just created (built while PostgreSQL stores it: no read back)."""
    return {
        "id": t.id,
        "name": t.name,
        "queue": t.queue,
        "priority": t.priority,
        "payload": t.payload,
        "status": t.status.value,
        "attempts": 0,
        "max_attempts": t.max_attempts,
        "timeout_seconds": t.timeout_seconds,
        "backoff": t.backoff.to_json(),
        "idempotency_key": t.idempotency_key,
        "lock_key": t.lock_key,
        "schedule_id": t.schedule_id,
        "webhook_url": t.webhook_url,
        "worker_id": None,
        "cancel_requested": False,
        "fence": 0,
        "run_at": iso_ms(t.run_at_ms),
        "created_at": iso_ms(t.created_at_ms),
        "started_at": None,
        "finished_at": None,
        "result": None,
        "error": None,
        "progress": None,
    }


def from_lease(lease: Lease, live: LiveTask | None) -> dict[str, Any]:
    """A task just leased, from the lease and Redis alone (its row was unreadable:
    PostgreSQL is down, which must not stop work that Redis can hand out)."""
    backoff = Backoff.decode(live.backoff) if live and live.backoff else Backoff()
    return {
        "id": lease.task_id,
        "name": lease.name,
        "queue": lease.queue,
        "priority": lease.priority,
        "payload": lease.payload,
        "status": "running",
        "attempts": lease.attempt,
        "max_attempts": lease.max_attempts,
        "timeout_seconds": lease.timeout_seconds,
        "backoff": backoff.to_json(),
        "idempotency_key": None,
        "lock_key": lease.lock_key,
        "schedule_id": None,
        "webhook_url": None,
        "worker_id": live.worker_id if live else None,
        "cancel_requested": False,
        "fence": lease.fence,
        "run_at": _iso(live.run_at_ms) if live else None,
        "created_at": None,
        "started_at": _iso(live.started_ms) if live else None,
        "finished_at": None,
        "result": None,
        "error": live.error if live else None,
        "progress": _live_progress(live.progress) if live and live.progress else None,
    }


# -- history -------------------------------------------------------------------------


def creation_events(row: Row) -> list[dict[str, Any]]:
    """Implied by the row itself, so creating a task writes one row, not three."""
    at = iso(row["created_at"])
    first = "scheduled" if row["created_scheduled"] else "queued"
    return [
        {"at": at, "event": "created", "attempt": 0, "worker_id": None, "error": None},
        {"at": at, "event": first, "attempt": 0, "worker_id": None, "error": None},
    ]


def recorded_event(e: Row) -> dict[str, Any]:
    """A row of ``dtq_task_events``."""
    event = {
        "at": iso(e["at"]),
        "event": e["event"],
        "attempt": e["attempt"],
        "worker_id": e["worker_id"],
        "error": e["error"],
    }
    data = e.get("data") or {}
    if e["event"] == "retrying" and data.get("run"):
        event["run_at"] = iso(from_ms(int(data["run"])))
    if data.get("reason") is not None:
        event["reason"] = REASONS.get(Code(int(data["reason"])), "unknown")
    if e["event"] == "progress":
        event["progress"] = _recorded_progress(data)
    return event


def stream_event(e: dict[str, Any]) -> dict[str, Any]:
    """A transition as the Lua scripts wrote it to the stream, shaped as a history row
    (the same fields queries.sql ``record_events`` keeps)."""
    name = e.get("ev")
    event: dict[str, Any] = {
        "at": iso(from_ms(int(e["at"]))),
        "event": name,
        "attempt": int(e.get("att") or 0),
        "worker_id": e.get("by") or e.get("w"),
        "error": e.get("err") if name in ("failed", "lease_expired") else None,
    }
    if name == "retrying" and e.get("run") is not None:
        event["run_at"] = iso(from_ms(int(e["run"])))
    if e.get("reason") is not None:
        event["reason"] = REASONS.get(Code(int(e["reason"])), "unknown")
    if name == "progress":
        event["progress"] = _recorded_progress(
            {"fraction": e.get("pf"), "message": e.get("pm"), "at": e.get("pat")}
        )
    return event
