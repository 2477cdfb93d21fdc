"""Firing schedules: each fire time of a schedule enqueues exactly one task, however
many scheduler instances tick and however often.

Three layers make that hold, each covering a failure the others do not:

1. Per schedule, a tick works inside one transaction that holds the schedule's row
   (``FOR UPDATE SKIP LOCKED``): concurrent instances skip a schedule that another one is
   firing instead of doing the same work.
2. The unique ``(schedule_id, fire_at)`` row decides: only the transaction that inserts it
   creates the task (``ON CONFLICT DO NOTHING`` answers the others with nothing).
3. The task's idempotency key is ``schedule:<id>:<fire ms>`` (arq's cron job id). The task
   commits on its own connection before the fire row does, so a crash in between rolls
   the fire row back and leaves a task; the next tick fires again, and the key hands back
   that same task instead of a second one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg
import redis

from chalicelib.core import cron
from chalicelib.core.clock import iso, to_ms
from chalicelib.core.errors import Conflict, NotFound, Unavailable
from chalicelib.core.models import TERMINAL
from chalicelib.core.taskspec import parse_task
from chalicelib.queue.taskhash import LiveTask
from chalicelib.record.schedules import Firing, ScheduleRecord
from chalicelib.record.store import Row
from chalicelib.service import taskview
from chalicelib.service.tasks import TaskService

log = logging.getLogger("dtq.schedules")


@dataclass
class FireReport:
    """What one tick did."""

    fired: int = 0  #: tasks created
    skipped: int = 0  #: fires skipped because the previous run was still going
    failed: list[str] = field(default_factory=list)  #: schedules that could not fire


@lru_cache(maxsize=4096)
def cron_spec(expr: str, timezone: str) -> cron.CronSpec:
    """Parsed once per process: every tick looks at every enabled schedule."""
    return cron.parse(expr, timezone)


def idempotency_key(schedule_id: str, fire_at: datetime) -> str:
    return f"schedule:{schedule_id}:{to_ms(fire_at)}"


def fire_due(tasks: TaskService, now: datetime) -> FireReport:
    """Enqueue every due fire of every enabled schedule (the cron tick).

    A schedule that cannot fire (a corrupted row: an invalid expression or task body) is
    logged and reported, and the others fire regardless; an unavailable Redis or
    PostgreSQL stops the tick (the next one resumes where this one stopped)."""
    report = FireReport()
    for row in ScheduleRecord(tasks.store).enabled():
        try:
            spec = cron_spec(row["cron"], row["timezone"])
            # Most ticks find nothing due: decide that without taking the row lock.
            if _due(spec, row, now):
                _fire_schedule(tasks, str(row["id"]), now, report)
        except (Unavailable, psycopg.OperationalError, redis.ConnectionError, redis.TimeoutError):
            raise
        except Exception as exc:  # one bad schedule must not stop the others
            log.error("schedule %s (%s) cannot fire: %s", row["id"], row["name"], exc)
            report.failed.append(str(row["id"]))
    return report


def _due(spec: cron.CronSpec, row: Row, now: datetime) -> list[datetime]:
    return cron.due_fires(spec, row["last_fire_at"], row["created_at"], now, row["catchup"])


def _fire_schedule(tasks: TaskService, schedule_id: str, now: datetime, report: FireReport) -> None:
    with ScheduleRecord(tasks.store).locked(schedule_id) as firing:
        if firing is None:
            return  # another instance holds it, or it was disabled or deleted meanwhile
        row = firing.row
        fires = _due(cron_spec(row["cron"], row["timezone"]), row, now)
        for fire_at in fires:
            skip = row["overlap"] == "skip" and _previous_running(tasks, firing)
            if not firing.insert(fire_at, skipped=skip, now=now):
                continue  # fired already
            if skip:
                log.info(
                    "schedule %s: fire %s skipped (previous run still going)",
                    row["name"],
                    iso(fire_at),
                )
                report.skipped += 1
                continue
            task = _create(tasks, row, idempotency_key(schedule_id, fire_at))
            firing.set_task(fire_at, task["id"])
            report.fired += 1
        if fires:
            firing.advance(fires[-1])


def _previous_running(tasks: TaskService, firing: Firing) -> bool:
    task_id = firing.previous_task_id()
    if task_id is None:
        return False
    try:
        # The live state (Redis) is newer than the record, which the recorder updates.
        status = tasks.get(task_id, history=False)["status"]
    except NotFound:
        return False  # purged by retention: long finished
    return status not in TERMINAL


def _create(tasks: TaskService, row: Row, key: str | None) -> dict[str, Any]:
    body = {**row["task"], **({"idempotency_key": key} if key else {})}
    spec = parse_task(body, max_payload_bytes=tasks.payload_limit)
    try:
        [(task, _)] = tasks.create([spec], schedule_id=str(row["id"]))
    except Conflict:
        # The schedule's task body changed between a crashed attempt of this fire and its
        # retry: the task that attempt created is this fire's task.
        existing = tasks.store.task_by_idempotency_key(key) if key else None
        if existing is None:
            raise
        return taskview.from_record(existing)
    return task


def run_now(tasks: TaskService, row: Row, now: datetime) -> dict[str, Any]:
    """Enqueue the schedule's task now (``POST /schedules/{id}/run``), recorded as a fire
    at ``now`` so that it shows in ``last_runs`` and counts for overlap "skip"."""
    with ScheduleRecord(tasks.store).manual(row) as firing:
        fire_at = firing.insert_free(now)
        task = _create(tasks, row, None)
        firing.set_task(fire_at, task["id"])
    return task


def last_runs(tasks: TaskService, schedule_id: str, limit: int) -> list[dict[str, Any]]:
    """The newest fires, each with the task it produced and that task's status now."""
    fires = ScheduleRecord(tasks.store).last_fires(schedule_id, limit)
    ids = [str(f["task_id"]) for f in fires if f["task_id"] is not None]
    rows = {str(r["id"]): r for r in tasks.store.get_tasks(ids)} if ids else {}
    live = _live(tasks, list(rows.values()))
    runs = []
    for f in fires:
        task_id = str(f["task_id"]) if f["task_id"] is not None else None
        if f["skipped"]:
            status: str | None = "skipped"
        elif task_id in rows:
            status = taskview.from_record(rows[task_id], live.get(task_id))["status"]
        else:
            status = None  # the task was purged by retention
        runs.append({"fire_at": iso(f["fire_at"]), "task_id": task_id, "status": status})
    return runs


def _live(tasks: TaskService, rows: list[Row]) -> dict[str, LiveTask]:
    try:
        states = tasks.queue.live_many([(r["queue"], str(r["id"])) for r in rows])
    except redis.RedisError:
        return {}  # the record alone still answers, a little older
    return {str(r["id"]): s for r, s in zip(rows, states, strict=True) if s is not None}
