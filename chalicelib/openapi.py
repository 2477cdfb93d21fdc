"""``GET /openapi.json``: the OpenAPI 3.1 description of the API, built here as data.

Tests check it against the app (every route documented and every documented route
served), validate it with openapi-spec-validator, and run schemathesis against a live
server to check that the answers match it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from chalicelib import openapi_schedules
from chalicelib.metrics import CONTENT_TYPE as METRICS_TEXT
from chalicelib.openapi_schemas import (
    COMPONENTS,
    NAME,
    QUEUE,
    STATUSES,
    TEXT,
    TIME,
    UUID,
    Schema,
    array,
    null,
    obj,
    ref,
)

_ERROR_TEXT = {
    400: "Invalid JSON, or a field failed validation",
    401: "Missing, malformed, expired or forged token",
    403: "The token's role does not allow this",
    404: "No such resource",
    405: "Method not allowed on this resource",
    409: "The current state does not allow this",
    413: "Body or payload too large",
    415: "A body with a content type other than JSON",
    429: "Rate limited; see Retry-After",
    503: "Redis or PostgreSQL unavailable; nothing was written",
}
_HEADER_TEXT = {"type": "string", "minLength": 1, "maxLength": 200}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str, where: str, schema: Schema, required: bool = False) -> Schema:
    return {"name": name, "in": where, "required": required, "schema": schema}


def _op(op_id: str, summary: str, ok: dict[int, Schema], *, errors: tuple[int, ...] = (),
        body: Schema | None = None, params: list[Schema] | None = None, public: bool = False,
        tag: str = "tasks") -> Schema:  # fmt: skip
    """One operation; the error answers every operation can give are added here."""
    codes = {503, 405, *errors}
    if not public:
        codes |= {401, 403}
    if body is not None:
        codes |= {400, 413, 415}
    responses: dict[str, Any] = {str(code): resp for code, resp in ok.items()}
    for code in sorted(codes - set(ok)):
        resp = _json(ref("Error"), _ERROR_TEXT[code])
        if code == 429:
            retry = {"type": "integer", "minimum": 1}
            resp["headers"] = {"Retry-After": {"schema": retry, "description": "seconds"}}
        responses[str(code)] = resp
    op: Schema = {"operationId": op_id, "summary": summary, "tags": [tag]}
    op["security"] = [] if public else [{"bearer": []}]
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    op["responses"] = responses
    return op


TASK_ID = _param("id", "path", UUID, True)
QUEUE_NAME = _param("name", "path", QUEUE, True)
PAGE = [
    _param("queue", "query", QUEUE),
    _param("name", "query", NAME),
    _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
    _param("cursor", "query", {"type": "string", "minLength": 1, "pattern": "^[^\\u0000]*$"}),
]

# fmt: off
_TOKEN = obj({
    "access_token": {"type": "string"},
    "token_type": {"const": "Bearer"},
    "expires_in": {"type": "integer"},
    "role": {"type": "string", "enum": ["admin", "worker"]},
}, ["access_token", "token_type", "expires_in", "role"])
_LOGIN = obj({"username": TEXT, "password": {**TEXT, "maxLength": 1024}},
             ["username", "password"])
_PAGE_REPLY = obj({"tasks": array(ref("Task")), "next_cursor": {"type": ["string", "null"]}},
                  ["tasks", "next_cursor"])
_BATCH = obj({"tasks": array(ref("TaskBody"), minItems=1, maxItems=1000)}, ["tasks"])
_REPLAY = {"oneOf": [obj({"ids": array(UUID, maxItems=1000)}, ["ids"]),
                     obj({"queue": QUEUE}, ["queue"])]}
_QUEUE_PATCH = obj({
    "paused": {"type": "boolean"},
    "rate_limit": {"oneOf": [{"type": "null"}, obj({
        "per_second": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000000},
        "burst": {"type": "integer", "minimum": 1, "maximum": 1000000},
    }, ["per_second", "burst"])]},
    "concurrency": {"type": ["integer", "null"], "minimum": 1, "maximum": 100000},
    "webhook_url": null({"type": "string", "maxLength": 2000,
                         "pattern": "^https?://[^\\s/\\u0000]+[^\\u0000]*$"}),
})
_NAMES = array(QUEUE, minItems=1, maxItems=100)
_REGISTER = obj({
    "worker_id": NAME,
    "queues": _NAMES,
    "hostname": {**TEXT, "maxLength": 255},
    "concurrency": {"type": "integer", "minimum": 1, "maximum": 10000},
    "mode": {"type": "string", "enum": ["redis", "http"]},
}, ["queues", "hostname", "concurrency", "mode"])
_REGISTERED = obj({"worker_id": {"type": "string"},
                   "heartbeat_interval_seconds": {"type": "integer"}},
                  ["worker_id", "heartbeat_interval_seconds"])
_CLAIM = obj({
    "worker_id": NAME,
    "queues": _NAMES,
    "max": {"type": "integer", "minimum": 1, "maximum": 100},
    "lease_seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
}, ["worker_id", "queues"])
_CLAIMED = obj({"tasks": array(ref("LeasedTask")),
                "retry_after_ms": {"type": "integer", "minimum": 0}}, ["tasks"])
_WAIT = obj({"queues": _NAMES,
             "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 20}},
            ["queues"])
_WAITED = obj({"work": {"type": "boolean"}}, ["work"])
_LEASE = obj({"lease_token": TEXT,
              "extend_seconds": {"type": "integer", "minimum": 1, "maximum": 86400}},
             ["lease_token"])
_RELEASE = obj({"lease_token": TEXT}, ["lease_token"])
_RELEASED = obj({"released": {"type": "boolean"}}, ["released"])
_LEASED = obj({"lease_expires_at": TIME, "cancel_requested": {"type": "boolean"}},
              ["lease_expires_at", "cancel_requested"])
_RESULT = obj({
    "id": UUID,
    "lease_token": TEXT,
    "status": {"type": "string", "enum": ["succeeded", "failed"]},
    "result": ref("JsonValue"),
    "error": null({**TEXT, "maxLength": 10000}),
    "started_at": null(TIME),
    "finished_at": null(TIME),
    "retry_delay_seconds": {"type": "number", "minimum": 0, "maximum": 315360000},
}, ["id", "lease_token", "status"])
# Items are checked one by one: a bad one is rejected in the answer, not with a 400,
# so any object is accepted here (each should be a SyncResult or a TaskBody).
_SYNC = obj({"worker_id": NAME,
             "results": array({"description": "a SyncResult"}, maxItems=1000),
             "created": array({"description": "a TaskBody with its idempotency_key"},
                              maxItems=1000)}, ["worker_id"])
_REJECTED = obj({
    "id": {"type": ["string", "null"]},
    "reason": {"type": "string"},
    "message": {"type": "string"},
    "idempotency_key": {"type": ["string", "null"]},
    "index": {"type": "integer"},
}, ["id", "reason"])
_SYNCED = obj({"accepted": array({"type": "string"}),
               "rejected": array(_REJECTED),
               "created": array(ref("Task"))}, ["accepted", "rejected", "created"])
_METRICS = {"description": "Metrics", "content": {
    METRICS_TEXT.split(";")[0]: {"schema": {"type": "string"}},
    "application/json": {"schema": ref("MetricsJson")}}}
# fmt: on


def _paths() -> dict[str, Any]:
    task = ref("Task")
    idem = _param("Idempotency-Key", "header", _HEADER_TEXT)
    lease_token = _param("X-Lease-Token", "header", {"type": "string"})
    status = _param("status", "query", {"type": "string", "enum": STATUSES})
    fmt = _param("format", "query", {"type": "string", "enum": ["json", "prometheus"]})
    # fmt: off
    return {
        "/auth/login": {"post": _op(
            "login", "Exchange a username and password for a JWT",
            {200: _json(_TOKEN, "A token")}, errors=(401, 429), body=_LOGIN, public=True,
            tag="auth")},
        "/tasks": {
            "post": _op("createTask", "Create a task",
                        {201: _json(task, "Created"), 200: _json(task, "Idempotent replay")},
                        errors=(409,), body=ref("TaskBody"), params=[idem]),
            "get": _op("listTasks", "Tasks, newest first", {200: _json(_PAGE_REPLY, "A page")},
                       errors=(400,), params=[status, *PAGE]),
        },
        "/tasks/batch": {"post": _op(
            "createTasks", "Create up to 1000 tasks, all or nothing",
            {201: _json(obj({"tasks": array(task)}, ["tasks"]), "Created")},
            errors=(409,), body=_BATCH)},
        "/tasks/{id}": {"get": _op(
            "getTask", "A task and its history (a worker: only a task it holds)",
            {200: _json(ref("TaskWithHistory"), "The task")}, errors=(404,),
            params=[TASK_ID, lease_token])},
        "/tasks/{id}/cancel": {"post": _op(
            "cancelTask", "Cancel a task",
            {200: _json(task, "Canceled"), 202: _json(task, "Running: cancel requested")},
            errors=(404, 409), params=[TASK_ID])},
        "/tasks/{id}/retry": {"post": _op(
            "retryTask", "Queue a dead or canceled task again", {200: _json(task, "Queued")},
            errors=(404, 409), params=[TASK_ID])},
        "/dead-letter": {"get": _op(
            "listDeadLetters", "Dead tasks, newest first", {200: _json(_PAGE_REPLY, "A page")},
            errors=(400,), params=PAGE, tag="dead-letter")},
        "/dead-letter/replay": {"post": _op(
            "replayDeadLetters", "Queue dead tasks again (by ids, or a whole queue)",
            {200: _json(obj({"replayed": {"type": "integer", "minimum": 0}}, ["replayed"]),
                        "How many were queued again")}, body=_REPLAY, tag="dead-letter")},
        "/queues": {"get": _op(
            "listQueues", "Queues with depths and settings",
            {200: _json(obj({"queues": array(ref("Queue"))}, ["queues"]), "Queues")},
            tag="queues")},
        "/queues/{name}": {
            "get": _op("getQueue", "One queue", {200: _json(ref("Queue"), "The queue")},
                       errors=(400, 404), params=[QUEUE_NAME], tag="queues"),
            "patch": _op("configureQueue", "Pause, rate-limit or cap a queue",
                         {200: _json(ref("Queue"), "The queue")}, body=_QUEUE_PATCH,
                         params=[QUEUE_NAME], tag="queues"),
        },
        "/workers/register": {"post": _op(
            "registerWorker", "Register a worker; calling again is the heartbeat",
            {200: _json(_REGISTERED, "Registered")}, body=_REGISTER, tag="workers")},
        "/workers": {"get": _op(
            "listWorkers", "Known workers",
            {200: _json(obj({"workers": array(ref("Worker"))}, ["workers"]), "Workers")},
            tag="workers")},
        "/tasks/claim": {"post": _op(
            "claimTasks", "Lease up to max tasks, highest priority first",
            {200: _json(_CLAIMED, "Leased tasks (possibly none)")}, body=_CLAIM,
            tag="workers")},
        "/tasks/wait": {"post": _op(
            "waitForTasks", "Block until an enqueue signals one of the queues (or timeout; "
            "default 1 s) — the idle worker's wake-up in HTTP mode",
            {200: _json(_WAITED, "work: whether a signal came (claim next)")}, body=_WAIT,
            tag="workers")},
        "/tasks/{id}/lease": {"post": _op(
            "extendLease", "Extend a lease, and learn whether the task was canceled",
            {200: _json(_LEASED, "Extended")}, errors=(404, 409), body=_LEASE,
            params=[TASK_ID], tag="workers")},
        "/tasks/{id}/release": {"post": _op(
            "releaseTask", "Give a task back (worker shutdown); the attempt is not counted",
            {200: _json(_RELEASED, "Released")}, errors=(404, 409), body=_RELEASE,
            params=[TASK_ID], tag="workers")},
        "/tasks/sync": {"post": _op(
            "syncTasks", "Report outcomes and push tasks created offline",
            {200: _json(_SYNCED, "Per item: accepted, rejected or created")}, body=_SYNC,
            tag="workers")},
        "/health": {"get": _op(
            "health", "Round trips to Redis and PostgreSQL",
            {200: _json(ref("Health"), "Healthy"), 503: _json(ref("Health"), "Degraded")},
            public=True, tag="operations")},
        "/metrics": {"get": _op(
            "metrics", "Cluster-wide metrics: Prometheus text, or JSON", {200: _METRICS},
            errors=(400,), params=[fmt], public=True, tag="operations")},
        "/openapi.json": {"get": _op(
            "openapi", "This document", {200: _json({"type": "object"}, "OpenAPI 3.1")},
            public=True, tag="operations")},
    }
    # fmt: on


@cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "DTQ",
            "version": "1.0.0",
            "description": "A distributed task queue: tasks, queues, workers, operations.",
        },
        "paths": {**_paths(), **openapi_schedules.paths()},
        "components": {
            "schemas": {**COMPONENTS, "SyncResult": _RESULT, **openapi_schedules.SCHEMAS},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
