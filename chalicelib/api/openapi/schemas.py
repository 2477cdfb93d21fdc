"""The JSON Schemas of the OpenAPI document (request bodies and responses).

Written as dense tables, one line per field, so that each reads like the field list in
docs/api.md; ``spec.py`` assembles them into the document.
"""

from __future__ import annotations

from typing import Any

from chalicelib.core.forms import MAX_SECONDS

Schema = dict[str, Any]

NAME = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9_.:-]+$"}
QUEUE = {**NAME, "maxLength": 100}
TIME = {"type": "string", "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}
#: A string PostgreSQL can store (no NUL).
TEXT = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^\\u0000]*$"}
STATUSES = ["scheduled", "queued", "running", "retrying", "succeeded", "dead", "canceled"]
DEPTHS = ["scheduled", "queued", "running", "retrying", "dead"]


def null(schema: Schema) -> Schema:
    return {**schema, "type": [schema["type"], "null"]}


def obj(
    props: dict[str, Schema], required: list[str] | None = None, *, closed: bool = True
) -> Schema:
    """An object schema; ``closed`` ones refuse unknown fields, as the API does."""
    schema: Schema = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def array(items: Schema, **limits: int) -> Schema:
    return {"type": "array", "items": items, **limits}


# fmt: off
JSON_VALUE: Schema = {"anyOf": [
    {"type": "string", "pattern": "^[^\\u0000]*$"},
    {"type": ["number", "boolean", "null"]},
    array(ref("JsonValue")),
    {"type": "object", "additionalProperties": ref("JsonValue")},
]}

MAX_DELAY_S = int(MAX_SECONDS)
BACKOFF_BODY = obj({
    "base_seconds": {"type": "number", "minimum": 0, "maximum": MAX_DELAY_S},
    "factor": {"type": "number", "minimum": 1, "maximum": 1000},
    "max_seconds": {"type": "number", "minimum": 0, "maximum": MAX_DELAY_S},
    "jitter": {"type": "boolean"},
})
BACKOFF = obj({k: {"type": "number"} for k in ("base_seconds", "factor", "max_seconds")}
              | {"jitter": {"type": "boolean"}}, closed=False)

TASK_BODY = {**obj({
    "name": NAME,
    "payload": {"type": "object", "additionalProperties": ref("JsonValue")},
    "queue": QUEUE,
    "priority": {"type": "integer", "minimum": 0, "maximum": 9},
    # A bound relative to now, which JSON Schema cannot express: stated in words.
    "run_at": {**null(TIME), "description": f"within ten years ({MAX_DELAY_S} s) of now"},
    "delay_seconds": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_DELAY_S},
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100},
    "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
    "backoff": {"oneOf": [ref("BackoffBody"), {"type": "null"}]},
    "idempotency_key": null(TEXT),
    "lock_key": null(TEXT),
    "webhook_url": null({"type": "string", "maxLength": 2000,
                         "pattern": "^https?://[^\\s/\\u0000]+[^\\u0000]*$"}),
}, ["name"]), "not": {"required": ["run_at", "delay_seconds"]}}

TASK_PROPS: dict[str, Schema] = {
    "id": UUID,
    "name": {"type": "string"},
    "queue": {"type": "string"},
    "priority": {"type": "integer"},
    "payload": {"type": "object"},
    "status": {"type": "string", "enum": STATUSES},
    "attempts": {"type": "integer"},
    "max_attempts": {"type": "integer"},
    "timeout_seconds": {"type": "integer"},
    "backoff": ref("Backoff"),
    "idempotency_key": {"type": ["string", "null"]},
    "lock_key": {"type": ["string", "null"]},
    "schedule_id": {"type": ["string", "null"]},
    "webhook_url": {"type": ["string", "null"]},
    "worker_id": {"type": ["string", "null"]},
    "cancel_requested": {"type": "boolean"},
    "fence": {"type": "integer"},
    "run_at": TIME,
    "created_at": TIME,
    "started_at": null(TIME),
    "finished_at": null(TIME),
    "result": {},
    "error": {"type": ["string", "null"]},
    "progress": {"oneOf": [{"type": "null"}, ref("Progress")]},
}
TASK_REQUIRED = [k for k in TASK_PROPS
                 if k not in ("cancel_requested", "fence", "webhook_url", "progress")]
TASK = obj(TASK_PROPS, TASK_REQUIRED, closed=False)

# The newest progress a handler reported (ctx.progress); `at` is when it reported it.
PROGRESS = obj({
    "fraction": {"type": "number", "minimum": 0, "maximum": 1},
    "message": {"type": "string", "maxLength": 1000},
    "at": null(TIME),
}, ["fraction", "message", "at"])

EVENT = obj({
    "at": TIME,
    "event": {"type": "string"},
    "attempt": {"type": "integer"},
    "worker_id": {"type": ["string", "null"]},
    "error": {"type": ["string", "null"]},
    "run_at": TIME,
    "reason": {"type": "string"},
    "progress": ref("Progress"),
}, ["at", "event", "attempt", "worker_id", "error"], closed=False)

TASK_WITH_HISTORY = obj({**TASK_PROPS, "history": array(EVENT)},
                        [*TASK_REQUIRED, "history"], closed=False)

# Claimed tasks are built from Redis alone if PostgreSQL is down: times may be null.
LEASED_TASK = obj({
    **TASK_PROPS,
    "run_at": null(TIME),
    "created_at": null(TIME),
    "attempt": {"type": "integer", "minimum": 1},
    "lease_token": {"type": "string"},
    "fence": {"type": "integer", "minimum": 1},
    "lease_expires_at": TIME,
}, [*TASK_REQUIRED, "attempt", "lease_token", "fence", "lease_expires_at"], closed=False)

ERROR = obj({"error": obj({
    "code": {"type": "string"},
    "message": {"type": "string"},
    "details": array(obj({"field": {"type": "string"}, "message": {"type": "string"}},
                         ["field", "message"])),
}, ["code", "message", "details"])}, ["error"])

RATE_LIMIT = obj({"per_second": {"type": "number"}, "burst": {"type": "integer"}},
                 ["per_second", "burst"])
QUEUE_INFO = obj({
    "name": {"type": "string"},
    "depth": obj({s: {"type": "integer", "minimum": 0} for s in DEPTHS}, DEPTHS),
    "paused": {"type": "boolean"},
    "oldest_queued_age_seconds": {"type": ["number", "null"], "minimum": 0},
    "rate_limit": {"oneOf": [{"type": "null"}, RATE_LIMIT]},
    "concurrency": {"type": ["integer", "null"]},
    "unrecorded_events": {"type": "integer", "minimum": 0},
    "webhook_url": {"type": ["string", "null"]},
    "durability": {"enum": ["record", "queue"]},
}, ["name", "depth", "paused", "oldest_queued_age_seconds", "rate_limit", "concurrency",
    "durability"])

WORKER_INFO = obj({
    "worker_id": {"type": "string"},
    "last_seen_at": TIME,
    "alive": {"type": "boolean"},
    "queues": array({"type": "string"}),
    "running": array({"type": "string"}),
    "mode": {"type": "string"},
    "hostname": {"type": "string"},
    "concurrency": {"type": "integer"},
}, ["worker_id", "last_seen_at", "alive", "queues", "running", "mode", "hostname"])

CHECK = obj({
    "status": {"type": "string", "enum": ["ok", "down"]},
    "latency_ms": {"type": "number"},
    "error": {"type": "string"},
}, ["status", "latency_ms"])
HEALTH = obj({
    "status": {"type": "string", "enum": ["ok", "degraded"]},
    "checks": obj({"redis": CHECK, "postgres": CHECK}, ["redis", "postgres"]),
}, ["status", "checks"])

METRICS_JSON = obj({"metrics": array(obj({
    "name": {"type": "string"},
    "type": {"type": "string", "enum": ["counter", "gauge", "histogram"]},
    "help": {"type": "string"},
    "samples": array(obj({
        "name": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "value": {"type": "number"},
    }, ["name", "labels", "value"])),
}, ["name", "type", "help", "samples"]))}, ["metrics"])
# fmt: on

COMPONENTS: dict[str, Schema] = {
    "JsonValue": JSON_VALUE,
    "Backoff": BACKOFF,
    "BackoffBody": BACKOFF_BODY,
    "TaskBody": TASK_BODY,
    "Task": TASK,
    "Progress": PROGRESS,
    "TaskWithHistory": TASK_WITH_HISTORY,
    "LeasedTask": LEASED_TASK,
    "Error": ERROR,
    "Queue": QUEUE_INFO,
    "Worker": WORKER_INFO,
    "Health": HEALTH,
    "MetricsJson": METRICS_JSON,
}
