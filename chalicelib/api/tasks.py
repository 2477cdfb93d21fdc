"""Task endpoints: create (one and batch), list, read, cancel, retry, dead letters."""

from __future__ import annotations

import base64
from typing import Any

from chalicelib.api.auth import Principal, Role
from chalicelib.api.http import Reply
from chalicelib.api.web import Web
from chalicelib.core import forms
from chalicelib.core.errors import Forbidden, InvalidJson, NotFound, ValidationError
from chalicelib.core.forms import Form
from chalicelib.core.models import TaskStatus
from chalicelib.core.taskspec import parse_task

MAX_BATCH = 1000
LIST_PARAMS = ("status", "queue", "name", "limit", "cursor", "created_after", "created_before")
#: How many dead tasks one ``{"queue": …}`` replay moves at most.
MAX_REPLAY = 10_000


def create(web: Web, body: Any, idempotency_header: str | None) -> Reply:
    if not isinstance(body, dict):
        raise InvalidJson("the body must be a JSON object")
    body = dict(body)
    if idempotency_header is not None:
        in_body = body.get("idempotency_key")
        if in_body is not None and in_body != idempotency_header:
            message = "differs from the Idempotency-Key header"
            raise ValidationError(
                f"idempotency_key {message}",
                details=[{"field": "idempotency_key", "message": message}],
            )
        body["idempotency_key"] = idempotency_header
    spec = parse_task(body, max_payload_bytes=web.services.tasks.payload_limit)
    [(task, created)] = web.services.tasks.create([spec])
    return Reply(task, 201 if created else 200)


def create_batch(web: Web, body: Any) -> Reply:
    form = Form(body, {"tasks"})
    items = form.items("tasks", max_items=MAX_BATCH, required=True)
    if "tasks" in form.body and not items and not form.errors:
        form.add("tasks", f"must hold 1-{MAX_BATCH} tasks")
    form.done()
    tasks = web.services.tasks.enqueue_many(items)
    return Reply({"tasks": tasks}, 201)


def list_tasks(web: Web, params: dict[str, str], status: str | None = None) -> dict[str, Any]:
    status = status or params.get("status")
    if status is not None and status not in TaskStatus.__members__.values():
        message = f"must be one of {', '.join(s.value for s in TaskStatus)}"
        raise ValidationError(
            f"status {message}", details=[{"field": "status", "message": message}]
        )
    tasks, cursor = web.services.tasks.list(
        status=status,
        queue=forms.query_name(params, "queue", 100),
        name=forms.query_name(params, "name", 200),
        limit=forms.query_int(params, "limit", 50, 1, 500),
        cursor=_decode_cursor(params.get("cursor")),
        created_after=forms.query_time(params, "created_after"),
        created_before=forms.query_time(params, "created_before"),
    )
    return {"tasks": tasks, "next_cursor": _encode_cursor(cursor)}


# Cursors travel in query strings: base64url keeps the '+' of a UTC offset intact.
def _encode_cursor(cursor: str | None) -> str | None:
    return None if cursor is None else base64.urlsafe_b64encode(cursor.encode()).decode()


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode() + b"==").decode()
        if not decoded:
            raise ValueError("empty cursor")
        return decoded
    except (ValueError, UnicodeError):
        message = "is invalid"
        raise ValidationError(
            f"cursor {message}", details=[{"field": "cursor", "message": message}]
        ) from None


#: Longest ``GET /tasks/{id}?wait=``: well inside API Gateway's 29 s.
MAX_WAIT_S = 20


def get(
    web: Web,
    raw_id: str,
    principal: Principal | None,
    lease_token: str | None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    task_id = forms.task_id(raw_id)
    wait_s = forms.query_int(params or {}, "wait", 0, 0, MAX_WAIT_S)
    client = web.services.tasks
    if principal is not None and principal.role != Role.ADMIN:
        # A worker may read only what it holds: the lease token is the proof.
        if lease_token is None or not client.holds(task_id, lease_token):
            raise Forbidden("a worker may read only a task it currently holds")
    if wait_s:
        return client.wait(task_id, wait_s, history=True)
    return client.get(task_id)


def cancel(web: Web, raw_id: str) -> Reply:
    task, done = web.services.tasks.cancel(forms.task_id(raw_id))
    return Reply(task, 200 if done else 202)


def retry(web: Web, raw_id: str) -> dict[str, Any]:
    return web.services.tasks.retry(forms.task_id(raw_id))


def replay_dead(web: Web, body: Any) -> dict[str, Any]:
    form = Form(body, {"ids", "queue"})
    ids = form.items("ids", max_items=MAX_BATCH)
    queue = form.text("queue", required=False, max_len=100, name=True)
    if ("ids" in form.body) == ("queue" in form.body):
        form.add("ids", 'give either "ids" or "queue"')
    for i, value in enumerate(ids):
        if _maybe_id(value) is None:
            form.add(f"ids[{i}]", "must be a task id (a UUID)")
    form.done()
    client = web.services.tasks
    wanted = client.dead_ids(queue, MAX_REPLAY) if queue is not None else ids
    return {"replayed": client.replay_dead(i for i in map(_maybe_id, wanted) if i is not None)}


def _maybe_id(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return forms.task_id(value)
    except NotFound:
        return None
