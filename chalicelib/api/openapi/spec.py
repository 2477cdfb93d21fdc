"""``GET /openapi.json``: the OpenAPI 3.1 description of the API, built here as data.

Tests check it against the app (every route documented and every documented route
served), validate it with openapi-spec-validator, and run schemathesis against a live
server to check that the answers match it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from chalicelib.api.metrics import CONTENT_TYPE as METRICS_TEXT
from chalicelib.api.openapi import dashboard as openapi_dashboard
from chalicelib.api.openapi import schedules as openapi_schedules
from chalicelib.api.openapi.operations import op, param, resp
from chalicelib.api.openapi.schemas import (
    COMPONENTS,
    NAME,
    QUEUE,
    STATUSES,
    TEXT,
    TIME,
    UUID,
    array,
    null,
    obj,
    ref,
)

_HEADER_TEXT = {"type": "string", "minLength": 1, "maxLength": 200}
TASK_ID = param("id", "path", UUID, True)
#: GET /tasks/{id}?wait=S: answer once the task is final, or after S seconds.
_wait = param("wait", "query", {"type": "integer", "minimum": 0, "maximum": 20})
QUEUE_NAME = param("name", "path", QUEUE, True)
PAGE = [
    param("queue", "query", QUEUE),
    param("name", "query", NAME),
    param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}),
    param("cursor", "query", {"type": "string", "minLength": 1, "pattern": "^[^\\u0000]*$"}),
]

# fmt: off
_MS = {"type": ["number", "null"], "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}
_TIMELINE = obj({"buckets": array(obj({
    "minute": TIME,
    "queue": QUEUE,
    "enqueued": _COUNT,
    "succeeded": _COUNT,
    "failed": _COUNT,
    "started": _COUNT,
    "p50_ms": _MS,
    "p99_ms": _MS,
}, ["minute", "queue", "enqueued", "succeeded", "failed", "started", "p50_ms", "p99_ms"]))},
    ["buckets"])
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
    "durability": {"enum": ["record", "queue"]},
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
_PROGRESS = obj({"lease_token": TEXT,
                 "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                 "message": {"type": "string", "maxLength": 1000, "pattern": "^[^\\u0000]*$"}},
                ["lease_token", "fraction"])
_PROGRESSED = obj({"recorded": {"type": "boolean"}}, ["recorded"])
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
    idem = param("Idempotency-Key", "header", _HEADER_TEXT)
    lease_token = param("X-Lease-Token", "header", {"type": "string"})
    status = param("status", "query", {"type": "string", "enum": STATUSES})
    fmt = param("format", "query", {"type": "string", "enum": ["json", "prometheus"]})
    # fmt: off
    return {
        "/auth/login": {"post": op(
            "login", "Exchange a username and password for a JWT",
            {200: resp(_TOKEN, "A token")}, errors=(401, 429), body=_LOGIN, public=True,
            tag="auth")},
        "/tasks": {
            "post": op("createTask", "Create a task",
                        {201: resp(task, "Created"), 200: resp(task, "Idempotent replay")},
                        errors=(409,), body=ref("TaskBody"), params=[idem]),
            "get": op("listTasks", "Tasks, newest first", {200: resp(_PAGE_REPLY, "A page")},
                       errors=(400,), params=[status, *PAGE, param("created_after", "query", TIME),
                                              param("created_before", "query", TIME)]),
        },
        "/tasks/batch": {"post": op(
            "createTasks", "Create up to 1000 tasks, all or nothing",
            {201: resp(obj({"tasks": array(task)}, ["tasks"]), "Created")},
            errors=(409,), body=_BATCH)},
        "/tasks/{id}": {"get": op(
            "getTask", "A task and its history (a worker: only a task it holds)",
            {200: resp(ref("TaskWithHistory"), "The task")}, errors=(400, 404),
            params=[TASK_ID, lease_token, _wait])},
        "/tasks/{id}/cancel": {"post": op(
            "cancelTask", "Cancel a task",
            {200: resp(task, "Canceled"), 202: resp(task, "Running: cancel requested")},
            errors=(404, 409), params=[TASK_ID])},
        "/tasks/{id}/retry": {"post": op(
            "retryTask", "Queue a dead or canceled task again", {200: resp(task, "Queued")},
            errors=(404, 409), params=[TASK_ID])},
        "/dead-letter": {"get": op(
            "listDeadLetters", "Dead tasks, newest first", {200: resp(_PAGE_REPLY, "A page")},
            errors=(400,), params=PAGE, tag="dead-letter")},
        "/dead-letter/replay": {"post": op(
            "replayDeadLetters", "Queue dead tasks again (by ids, or a whole queue)",
            {200: resp(obj({"replayed": {"type": "integer", "minimum": 0}}, ["replayed"]),
                        "How many were queued again")}, body=_REPLAY, tag="dead-letter")},
        "/queues": {"get": op(
            "listQueues", "Queues with depths and settings",
            {200: resp(obj({"queues": array(ref("Queue"))}, ["queues"]), "Queues")},
            tag="queues")},
        "/queues/{name}": {
            "get": op("getQueue", "One queue", {200: resp(ref("Queue"), "The queue")},
                       errors=(400, 404), params=[QUEUE_NAME], tag="queues"),
            "patch": op("configureQueue", "Pause, rate-limit or cap a queue",
                         {200: resp(ref("Queue"), "The queue")}, body=_QUEUE_PATCH,
                         params=[QUEUE_NAME], tag="queues"),
        },
        "/workers/register": {"post": op(
            "registerWorker", "Register a worker; calling again is the heartbeat",
            {200: resp(_REGISTERED, "Registered")}, body=_REGISTER, tag="workers")},
        "/workers": {"get": op(
            "listWorkers", "Known workers",
            {200: resp(obj({"workers": array(ref("Worker"))}, ["workers"]), "Workers")},
            tag="workers")},
        "/tasks/claim": {"post": op(
            "claimTasks", "Lease up to max tasks, highest priority first",
            {200: resp(_CLAIMED, "Leased tasks (possibly none)")}, body=_CLAIM,
            tag="workers")},
        "/tasks/wait": {"post": op(
            "waitForTasks", "Block until an enqueue signals one of the queues (or timeout; "
            "default 1 s) — the idle worker's wake-up in HTTP mode",
            {200: resp(_WAITED, "work: whether a signal came (claim next)")}, body=_WAIT,
            tag="workers")},
        "/tasks/{id}/lease": {"post": op(
            "extendLease", "Extend a lease, and learn whether the task was canceled",
            {200: resp(_LEASED, "Extended")}, errors=(404, 409), body=_LEASE,
            params=[TASK_ID], tag="workers")},
        "/tasks/{id}/release": {"post": op(
            "releaseTask", "Give a task back (worker shutdown); the attempt is not counted",
            {200: resp(_RELEASED, "Released")}, errors=(404, 409), body=_RELEASE,
            params=[TASK_ID], tag="workers")},
        "/tasks/{id}/progress": {"post": op(
            "reportProgress", "Report how far a running task is (its holder only); kept as "
            "the task's progress, a `progress` history event at most once a second",
            {200: resp(_PROGRESSED, "recorded: whether a history event was written now")},
            errors=(404, 409), body=_PROGRESS, params=[TASK_ID], tag="workers")},
        "/tasks/sync": {"post": op(
            "syncTasks", "Report outcomes and push tasks created offline",
            {200: resp(_SYNCED, "Per item: accepted, rejected or created")}, body=_SYNC,
            tag="workers")},
        "/health": {"get": op(
            "health", "Round trips to Redis and PostgreSQL",
            {200: resp(ref("Health"), "Healthy"), 503: resp(ref("Health"), "Degraded")},
            public=True, tag="operations")},
        "/metrics": {"get": op(
            "metrics", "Cluster-wide metrics: Prometheus text, or JSON", {200: _METRICS},
            errors=(400,), params=[fmt], public=True, tag="operations")},
        "/stats/timeline": {"get": op(
            "timeline", "Per queue and minute of the last `minutes` (default 60): tasks "
            "enqueued, succeeded, failed attempts, attempts started and the wait (due to "
            "started) p50 and p99; minutes without activity are left out",
            {200: resp(_TIMELINE, "Buckets, oldest minute first")}, errors=(400,),
            params=[param("minutes", "query", {"type": "integer", "minimum": 1,
                                               "maximum": 1440}),
                    param("queue", "query", QUEUE)],
            tag="operations")},
        "/openapi.json": {"get": op(
            "openapi", "This document", {200: resp({"type": "object"}, "OpenAPI 3.1")},
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
        "paths": {**_paths(), **openapi_schedules.paths(), **openapi_dashboard.paths()},
        "components": {
            "schemas": {**COMPONENTS, "SyncResult": _RESULT, **openapi_schedules.SCHEMAS},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
