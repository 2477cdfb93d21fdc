"""The one task check: a task body → a validated :class:`TaskSpec`.

Every way in runs it, with the same rules: ``POST /tasks`` and its batch, the Python
``TaskService.enqueue``, a schedule's task (when saved and when fired), a task created
offline and synced, and a worker's own enqueue. So a bound (ten years of delay, a
storable string, an integral ``5.0`` priority) cannot hold on one path and not another.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from chalicelib.core.clock import utcnow
from chalicelib.core.errors import PayloadTooLarge, ValidationError
from chalicelib.core.forms import MAX_SECONDS, Form
from chalicelib.core.jsontext import compact
from chalicelib.core.models import DEFAULT_BACKOFF, Backoff

#: How far ``run_at`` may lie from now, either way: the bound of ``delay_seconds``. A
#: time near year 9999 was not storable as an event's millisecond bigint, and one such
#: event held up the whole record.
MAX_RUN_AT_DISTANCE = timedelta(seconds=MAX_SECONDS)
TASK_FIELDS = frozenset(
    {
        "name",
        "payload",
        "queue",
        "priority",
        "run_at",
        "delay_seconds",
        "max_attempts",
        "timeout_seconds",
        "backoff",
        "idempotency_key",
        "lock_key",
        "webhook_url",
    }
)
BACKOFF_FIELDS = frozenset({"base_seconds", "factor", "max_seconds", "jitter"})
#: Integer fields; JSON Schema counts ``3.0`` as an integer, and so do we.
_INT_FIELDS = ("priority", "max_attempts", "timeout_seconds")


class TaskSpec(NamedTuple):
    """A task body, validated (a named tuple, like ``models.NewTask``: one is built per
    task of a batch)."""

    name: str
    payload: dict[str, Any]
    payload_json: str
    queue: str = "default"
    priority: int = 5
    run_at: datetime | None = None
    delay_seconds: float | None = None
    max_attempts: int = 5
    timeout_seconds: int = 300
    backoff: Backoff = DEFAULT_BACKOFF
    idempotency_key: str | None = None
    lock_key: str | None = None
    webhook_url: str | None = None
    request_hash: str | None = None  #: only with an idempotency key: it is what it guards


def request_hash(body: dict[str, Any]) -> str:
    """Fingerprint of a task body, to tell a repeated request from a different one that
    reuses an idempotency key (``5.0`` and ``5`` are the same priority)."""
    canonical = {k: v for k, v in body.items() if k != "idempotency_key"}
    for key in _INT_FIELDS:
        value = canonical.get(key)
        if isinstance(value, float) and value.is_integer():
            canonical[key] = int(value)
    return hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def parse_task(
    body: Any, *, max_payload_bytes: int, prefix: str = "", now: datetime | None = None
) -> TaskSpec:
    """Validate one task body; every problem is named at once. ``prefix`` names the
    body's place (``tasks[3].``); ``now`` (default: the wall clock) is what ``run_at``
    is bounded around."""
    if not isinstance(body, dict):
        field = prefix.rstrip(".")
        raise ValidationError(
            f"{field or 'the task'} must be a JSON object",
            details=[{"field": field, "message": "must be a JSON object"}],
        )
    form = Form(body, TASK_FIELDS, prefix)
    name = form.text("name", max_len=200, name=True) or ""
    queue = form.text("queue", required=False, max_len=100, name=True) or "default"
    payload = body.get("payload", {})
    if not isinstance(payload, dict):
        form.add("payload", "must be a JSON object")
        payload = {}
    run_at: datetime | None = None
    delay: float | None = None
    if "run_at" in body and "delay_seconds" in body:
        form.add("run_at", "give run_at or delay_seconds, not both")
    else:
        run_at = form.moment("run_at")
        if run_at is not None and abs(run_at - (now or utcnow())) > MAX_RUN_AT_DISTANCE:
            # Aware datetimes subtract across offsets without converting to UTC, which
            # would overflow for a time such as 0001-01-01T00:00:00+14:00.
            form.add("run_at", f"must be within ten years ({MAX_SECONDS:.0f} seconds) of now")
            run_at = None
        delay = form.number("delay_seconds", 0.0, MAX_SECONDS, lo_open=False, nullable=True)
    webhook = form.url("webhook_url")
    priority = form.integer("priority", 0, 9)
    max_attempts = form.integer("max_attempts", 1, 100)
    timeout_seconds = form.integer("timeout_seconds", 1, 86400)
    backoff = _backoff(form)
    idempotency_key = form.text("idempotency_key", required=False, nullable=True)
    lock_key = form.text("lock_key", required=False, nullable=True)
    form.done()
    payload_json = compact(payload)
    # UTF-8 takes at most 4 bytes per character: most payloads need no encoding to tell.
    if len(payload_json) * 4 > max_payload_bytes and len(payload_json.encode()) > max_payload_bytes:
        raise PayloadTooLarge(
            f"{prefix}payload is larger than {max_payload_bytes} bytes",
            details=[{"field": prefix + "payload", "message": "too large"}],
        )
    return TaskSpec(
        name=name,
        payload=payload,
        payload_json=payload_json,
        queue=queue,
        priority=5 if priority is None else priority,
        run_at=run_at,
        delay_seconds=delay,
        max_attempts=max_attempts or 5,
        timeout_seconds=timeout_seconds or 300,
        backoff=backoff,
        idempotency_key=idempotency_key,
        lock_key=lock_key,
        webhook_url=webhook,
        request_hash=request_hash(body) if idempotency_key is not None else None,
    )


def _backoff(form: Form) -> Backoff:
    sub = form.nested("backoff", BACKOFF_FIELDS)
    if sub is None:
        return DEFAULT_BACKOFF
    base = sub.number("base_seconds", 0.0, MAX_SECONDS, lo_open=False)
    factor = sub.number("factor", 1.0, 1000.0, lo_open=False)
    most = sub.number("max_seconds", 0.0, MAX_SECONDS, lo_open=False)
    jitter = sub.boolean("jitter")
    return Backoff(
        base_seconds=DEFAULT_BACKOFF.base_seconds if base is None else base,
        factor=DEFAULT_BACKOFF.factor if factor is None else factor,
        max_seconds=DEFAULT_BACKOFF.max_seconds if most is None else most,
        jitter=DEFAULT_BACKOFF.jitter if jitter is None else jitter,
    )
