"""The schedule endpoints of the OpenAPI document (``spec.py`` merges them in)."""

from __future__ import annotations

from typing import Any

from chalicelib.api.openapi.operations import op, param, resp
from chalicelib.api.openapi.schemas import (
    NAME,
    TASK_BODY,
    TIME,
    UUID,
    Schema,
    array,
    null,
    obj,
    ref,
)
from chalicelib.core.cron import CATCHUP_MODES, MAX_EXPR_LENGTH
from chalicelib.service.schedules import OVERLAP_MODES, SCHEDULER_TASK_FIELDS

_NO_NUL = "^[^\\u0000]*$"
CRON = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_EXPR_LENGTH,
    "pattern": _NO_NUL,
    "description": "5-field cron, or @hourly @daily @weekly @monthly @yearly",
}
ZONE = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "pattern": _NO_NUL,
    "description": "IANA time zone, e.g. Europe/Berlin",
}

# fmt: off
_TASK_PROPS = {k: v for k, v in TASK_BODY["properties"].items() if k not in SCHEDULER_TASK_FIELDS}
_FIELDS: dict[str, Schema] = {
    "name": NAME,
    "cron": CRON,
    "timezone": ZONE,
    "task": ref("ScheduleTask"),
    "enabled": {"type": "boolean"},
    "catchup": {"type": "string", "enum": list(CATCHUP_MODES)},
    "overlap": {"type": "string", "enum": list(OVERLAP_MODES)},
}
_SCHEDULE_PROPS: dict[str, Schema] = {
    "id": UUID,
    "name": {"type": "string"},
    "cron": {"type": "string"},
    "timezone": {"type": "string"},
    "task": {"type": "object"},
    "enabled": {"type": "boolean"},
    "catchup": {"type": "string", "enum": list(CATCHUP_MODES)},
    "overlap": {"type": "string", "enum": list(OVERLAP_MODES)},
    "source": {"type": ["string", "null"]},
    "next_run_at": null(TIME),
    "created_at": TIME,
    "updated_at": TIME,
}
_RUN = obj({"fire_at": TIME, "task_id": null(UUID),
            "status": {"type": ["string", "null"]}}, ["fire_at", "task_id", "status"])
SCHEMAS: dict[str, Schema] = {
    "ScheduleTask": obj(_TASK_PROPS, ["name"]),
    "ScheduleBody": obj(_FIELDS, ["name", "cron", "task"]),
    "SchedulePatch": obj(_FIELDS),
    "Schedule": obj(_SCHEDULE_PROPS, list(_SCHEDULE_PROPS), closed=False),
    "ScheduleDetail": obj({**_SCHEDULE_PROPS, "next_fire_times": array(TIME),
                           "last_runs": array(_RUN)},
                          [*_SCHEDULE_PROPS, "next_fire_times", "last_runs"], closed=False),
}
# fmt: on


def paths() -> dict[str, Any]:

    sid = param("id", "path", UUID, True)
    detail = ref("ScheduleDetail")
    preview_params = [
        param("cron", "query", CRON, True),
        param("timezone", "query", ZONE),
        param("after", "query", TIME),
        param("count", "query", {"type": "integer", "minimum": 1, "maximum": 100}),
    ]
    fire = obj(
        {"at": TIME, "local": {"type": "string"}, "dst": {"enum": ["gap", "repeat", None]}},
        ["at", "local", "dst"],
    )
    fire_times = obj({"fire_times": array(TIME), "fires": array(fire)}, ["fire_times", "fires"])
    # fmt: off
    return {
        "/schedules": {
            "post": op("createSchedule", "Create a recurring schedule",
                        {201: resp(ref("Schedule"), "Created, with next_run_at")},
                        errors=(409,), body=ref("ScheduleBody"), tag="schedules"),
            "get": op("listSchedules", "Every schedule",
                       {200: resp(obj({"schedules": array(ref("Schedule"))}, ["schedules"]),
                                   "Schedules")}, tag="schedules"),
        },
        "/schedules/preview": {"get": op(
            "previewSchedule", "The fire times a cron expression would have after a time",
            {200: resp(fire_times, "Fire times (UTC)")}, errors=(400,),
            params=preview_params, tag="schedules")},
        "/schedules/{id}": {
            "get": op("getSchedule", "A schedule, its next 5 fire times and its last runs",
                       {200: resp(detail, "The schedule")}, errors=(404,), params=[sid],
                       tag="schedules"),
            "patch": op("updateSchedule", "Change a schedule",
                         {200: resp(ref("Schedule"), "The schedule")}, errors=(404, 409),
                         body=ref("SchedulePatch"), params=[sid], tag="schedules"),
            "delete": op("deleteSchedule", "Delete a schedule (its tasks stay)",
                          {204: {"description": "Deleted"}}, errors=(404,), params=[sid],
                          tag="schedules"),
        },
        "/schedules/{id}/run": {"post": op(
            "runSchedule", "Enqueue the schedule's task now",
            {201: resp(ref("Task"), "The task it enqueued")}, errors=(400, 404, 413),
            params=[sid], tag="schedules")},
    }
    # fmt: on
