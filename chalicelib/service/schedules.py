"""Recurring schedules: validated bodies, create / read / update / delete, and the JSON
the API returns. Firing them (exactly once per fire time) is ``firing.py``'s job; the
fire-time maths is ``cron.py``'s.

A schedule's ``last_fire_at`` is the start of its fire window: the next tick enqueues the
fire times after it (see ``cron.due_fires``). Re-enabling a schedule or changing its times
restarts the window at that moment, so that neither replays the fires it was not due for.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from chalicelib.core import cron, forms
from chalicelib.core.clock import iso
from chalicelib.core.errors import ApiError, Conflict, NotFound, ValidationError
from chalicelib.core.forms import Form, parse_datetime
from chalicelib.core.taskspec import parse_task
from chalicelib.record.schedules import ScheduleRecord
from chalicelib.record.store import Row
from chalicelib.service import firing
from chalicelib.service.firing import cron_spec
from chalicelib.service.tasks import TaskService

log = logging.getLogger("dtq.schedules")

FIELDS = ("name", "cron", "timezone", "task", "enabled", "catchup", "overlap")
OVERLAP_MODES = ("allow", "skip")
#: Set by the scheduler for each fire, so a schedule's task body may not carry them.
SCHEDULER_TASK_FIELDS = ("idempotency_key", "run_at")
DEFAULTS: dict[str, Any] = {
    "timezone": "UTC",
    "enabled": True,
    "catchup": "latest",
    "overlap": "allow",
}
#: How many upcoming fire times and past runs ``GET /schedules/{id}`` shows.
NEXT_COUNT = 5
LAST_RUNS = 10


@dataclass(frozen=True)
class ScheduleSpec:
    """A validated schedule body."""

    name: str
    cron: str
    timezone: str
    task: dict[str, Any]
    enabled: bool = True
    catchup: str = "latest"
    overlap: str = "allow"


def parse_schedule(
    body: Any, *, max_payload_bytes: int, base: ScheduleSpec | None = None
) -> ScheduleSpec:
    """A ``POST /schedules`` body, or with ``base`` a ``PATCH`` body merged over it.
    Every problem is reported at once, each naming its field."""
    form = Form(body, FIELDS)
    creating = base is None
    given: dict[str, Any] = {
        "name": form.text("name", required=creating, name=True),
        "cron": form.text("cron", required=creating, max_len=cron.MAX_EXPR_LENGTH),
        "timezone": form.text("timezone", required=False, max_len=64),
        "enabled": form.boolean("enabled"),
        "catchup": form.choice("catchup", cron.CATCHUP_MODES, required=False),
        "overlap": form.choice("overlap", OVERLAP_MODES, required=False),
        "task": _task(form, max_payload_bytes, required=creating),
    }
    merged = {**DEFAULTS, **(asdict(base) if base else {})}
    merged |= {k: v for k, v in given.items() if v is not None}
    if "cron" in merged:
        try:
            merged["cron"] = cron_spec(merged["cron"], merged["timezone"]).expr
        except ValidationError as exc:
            for detail in exc.details:
                form.add(detail["field"], detail["message"])
    form.done()
    return ScheduleSpec(**merged)


def _task(form: Form, max_payload_bytes: int, *, required: bool) -> dict[str, Any] | None:
    value = form.body.get("task")
    if value is None:
        if required or "task" in form.body:
            form.add("task", "is required" if "task" not in form.body else "must be an object")
        return None
    if not isinstance(value, dict):
        form.add("task", "must be a JSON object (a task body as for POST /tasks)")
        return None
    for key in SCHEDULER_TASK_FIELDS:
        if key in value:
            form.add(f"task.{key}", "is set by the scheduler for each fire")
    try:
        parse_task(value, max_payload_bytes=max_payload_bytes, prefix="task.")
    except ValidationError as exc:
        for detail in exc.details:
            form.add(detail["field"], detail["message"])
        return None
    return dict(value)


def spec_of(row: Row) -> ScheduleSpec:
    return ScheduleSpec(**{k: row[k] for k in FIELDS})


def schedule_id(raw: str) -> str:
    """A schedule id in canonical form; anything that is not a UUID names none (404)."""
    try:
        return str(uuid.UUID(raw))
    except (ValueError, TypeError, AttributeError):
        raise NotFound(f"schedule {str(raw)[:64]!r} not found") from None


class Schedules:
    """Schedule CRUD over the record; ``now`` is always passed in."""

    def __init__(self, tasks: TaskService) -> None:
        self.tasks = tasks
        self.record = ScheduleRecord(tasks.store)

    def _limit(self) -> int:
        return self.tasks.payload_limit

    def create(self, body: Any, now: datetime, *, source: str | None = None) -> dict[str, Any]:
        spec = parse_schedule(body, max_payload_bytes=self._limit())
        params = {**_params(spec), "id": str(uuid.uuid4()), "source": source, "now": now}
        row = self.record.insert(params)
        if row is None:
            raise _name_taken(spec.name)
        return schedule_json(row, now)

    def rows(self) -> list[Row]:
        return self.record.rows()

    def row(self, raw_id: str) -> Row:
        sid = schedule_id(raw_id)
        row = self.record.get(sid)
        if row is None:
            raise NotFound(f"schedule {sid} not found")
        return dict(row)

    def list(self, now: datetime) -> list[dict[str, Any]]:
        return [schedule_json(r, now) for r in self.rows()]

    def get(self, raw_id: str, now: datetime) -> dict[str, Any]:
        row = self.row(raw_id)
        out = schedule_json(row, now)
        try:
            times = cron.next_fire_times(cron_spec(row["cron"], row["timezone"]), now, NEXT_COUNT)
        except ValidationError:
            times = []  # a corrupted row is still shown, with no fire times
        out["next_fire_times"] = [iso(t) for t in times]
        out["last_runs"] = firing.last_runs(self.tasks, str(row["id"]), LAST_RUNS)
        return out

    def update(
        self, raw_id: str, body: Any, now: datetime, *, source: str | bool | None = False
    ) -> dict[str, Any]:
        """PATCH; ``source`` False keeps the row's source (the API never changes it)."""
        row = self.row(raw_id)
        try:
            base = spec_of(row)
        except TypeError:  # a corrupted row: the body must then say everything
            base = None
        spec = parse_schedule(body, max_payload_bytes=self._limit(), base=base)
        window = row["last_fire_at"]
        times_changed = (spec.cron, spec.timezone) != (row["cron"], row["timezone"])
        if (spec.enabled and not row["enabled"]) or times_changed:
            window = max(now, window) if window else now
        params = {
            **_params(spec),
            "id": str(row["id"]),
            "now": now,
            "last_fire_at": window,
            "source": row["source"] if source is False else source,
        }
        try:
            updated = self.record.update(params)
        except Conflict:
            raise _name_taken(spec.name) from None
        if updated is None:
            raise NotFound(f"schedule {row['id']} not found")
        return schedule_json(updated, now)

    def delete(self, raw_id: str) -> None:
        sid = schedule_id(raw_id)
        if not self.record.delete(sid):
            raise NotFound(f"schedule {sid} not found")

    def run(self, raw_id: str, now: datetime) -> dict[str, Any]:
        """Enqueue the schedule's task now, outside its fire times (``POST …/run``)."""
        return firing.run_now(self.tasks, self.row(raw_id), now)


def preview(params: dict[str, str], now: datetime) -> dict[str, Any]:
    """``GET /schedules/preview``: the fire times a schedule would have after ``after``."""
    errors: list[dict[str, str]] = []
    after = now
    if params.get("after") is not None:
        try:
            after = _after(params["after"])
        except ValueError as exc:
            errors.append({"field": "after", "message": str(exc)})
    if "cron" not in params:
        errors.append({"field": "cron", "message": "is required"})
    if errors:
        raise ValidationError(f"{errors[0]['field']} {errors[0]['message']}", details=errors)
    count = forms.query_int(params, "count", NEXT_COUNT, 1, 100)
    spec = cron.parse(params["cron"], params.get("timezone", "UTC"))
    times = cron.next_fire_times(spec, after, count)
    fires = [
        {"at": iso(t), "local": t.astimezone(spec.tz).isoformat(), "dst": cron.dst_note(spec, t)}
        for t in times
    ]
    return {"fire_times": [iso(t) for t in times], "fires": fires}


def _after(raw: str) -> datetime:
    moment = parse_datetime(raw)
    # Far from datetime's limits, where converting between zones would overflow.
    if not 1970 <= moment.year <= 9000:
        raise ValueError("must be between the years 1970 and 9000")
    return moment


def schedule_json(row: Row, now: datetime) -> dict[str, Any]:
    """A schedule as the API returns it; a corrupted row shows with no next run."""
    next_run: datetime | None = None
    if row["enabled"]:
        try:
            spec = cron_spec(row["cron"], row["timezone"])
            next_run = next(iter(cron.next_fire_times(spec, now, 1)), None)
        except ApiError as exc:
            log.warning("schedule %s has an invalid expression: %s", row["id"], exc)
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "cron": row["cron"],
        "timezone": row["timezone"],
        "task": row["task"],
        "enabled": row["enabled"],
        "catchup": row["catchup"],
        "overlap": row["overlap"],
        "source": row["source"],
        "next_run_at": iso(next_run),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def _params(spec: ScheduleSpec) -> dict[str, Any]:
    return {**asdict(spec), "task": Jsonb(spec.task)}


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a schedule named {name!r} exists already")
