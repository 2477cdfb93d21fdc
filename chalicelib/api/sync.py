"""``POST /tasks/sync``: outcomes reported by workers (online or after being offline),
and tasks they created while offline.

The rules for outcomes live in ``chalicelib/service/outcomes.py`` (shared with the Redis
transport of workers); this module reads the request, checks every item (one bad item is
rejected with ``invalid``, never a 400 for the whole request) and renders the verdicts.
"""

from __future__ import annotations

from typing import Any

from chalicelib.api.web import Web
from chalicelib.core import forms
from chalicelib.core.errors import ApiError, Conflict, NotFound, PayloadTooLarge, ValidationError
from chalicelib.core.forms import MAX_SECONDS, Form
from chalicelib.core.jsonbody import problem
from chalicelib.core.jsontext import compact
from chalicelib.core.models import Outcome
from chalicelib.core.taskspec import TaskSpec, parse_task
from chalicelib.service.outcomes import report as report_outcomes

MAX_ITEMS = 1000
MAX_ERROR_CHARS = 10_000
_RESULT_FIELDS = {
    "id",
    "lease_token",
    "status",
    "result",
    "error",
    "started_at",
    "finished_at",
    "retry_delay_seconds",
}


def sync(web: Web, body: Any) -> dict[str, Any]:
    # Items are checked one by one below: one bad item is rejected, not a 400.
    form = Form(body, {"worker_id", "results", "created"}, deep=False)
    worker_id = form.text("worker_id", max_len=200, name=True)
    results = form.items("results", max_items=MAX_ITEMS)
    created = form.items("created", max_items=MAX_ITEMS)
    form.done()
    assert worker_id is not None
    rejected: list[dict[str, Any]] = []
    tasks = _create(web, created, rejected)
    accepted = _report(web, worker_id, results, rejected)
    return {"accepted": accepted, "rejected": rejected, "created": tasks}


# -- outcomes -------------------------------------------------------------------------


def _report(
    web: Web, worker_id: str, results: list[Any], rejected: list[dict[str, Any]]
) -> list[str]:
    outcomes: list[Outcome] = []
    for i, raw in enumerate(results):
        try:
            outcomes.append(_outcome(web, worker_id, i, raw))
        except NotFound as exc:
            rejected.append({"id": _raw_id(raw), "reason": "not_found", "message": exc.message})
        except ApiError as exc:
            reason = "payload_too_large" if isinstance(exc, PayloadTooLarge) else "invalid"
            rejected.append({"id": _raw_id(raw), "reason": reason, "message": exc.message})
    accepted: list[str] = []
    verdicts = report_outcomes(web.services.queue, outcomes)
    for o, verdict in zip(outcomes, verdicts, strict=True):
        if verdict is None:
            accepted.append(o.task_id)
        else:
            rejected.append({"id": o.task_id, "reason": verdict})
    return accepted


def _outcome(web: Web, worker_id: str, index: int, raw: Any) -> Outcome:
    form = Form(raw, _RESULT_FIELDS, prefix=f"results[{index}].")
    task_id = form.text("id", max_len=36)
    token = form.text("lease_token", max_len=200)
    status = form.choice("status", ("succeeded", "failed"))
    error = form.text("error", required=False, max_len=MAX_ERROR_CHARS, nullable=True)
    retry_delay = form.number("retry_delay_seconds", 0.0, MAX_SECONDS, lo_open=False, nullable=True)
    for key in ("started_at", "finished_at"):
        form.moment(key)
    form.done()
    assert task_id is not None and token is not None
    task_id = forms.task_id(task_id)
    result_json = compact(form.body.get("result"))
    succeeded = status == "succeeded"
    payloads = web.services.tasks.payloads
    if succeeded and payloads is not None:
        result_json = payloads.offload_result(task_id, result_json)  # S3 when too large
    elif len(result_json.encode()) > web.settings.max_payload_bytes:
        raise PayloadTooLarge(f"result is larger than {web.settings.max_payload_bytes} bytes")
    queue = web.services.tasks.queue_of(task_id)
    return Outcome(
        queue=queue,
        task_id=task_id,
        token=token,
        succeeded=succeeded,
        result_json=result_json if succeeded else "null",
        error="" if succeeded else (error or "failed"),
        worker_id=worker_id,
        retry_delay_ms=None if retry_delay is None else int(retry_delay * 1000),
    )


def _raw_id(raw: Any) -> Any:
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and problem(value) is None else None


# -- tasks created offline --------------------------------------------------------------


def _create(web: Web, created: list[Any], rejected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs: list[TaskSpec] = []
    for i, raw in enumerate(created):
        try:
            specs.append(_spec(web, i, raw))
        except ApiError as exc:
            key = raw.get("idempotency_key") if isinstance(raw, dict) else None
            reason = "payload_too_large" if isinstance(exc, PayloadTooLarge) else "invalid"
            rejected.append(
                {
                    "id": None,
                    "idempotency_key": key if isinstance(key, str) else None,
                    "index": i,
                    "reason": reason,
                    "message": exc.message,
                }
            )
    if not specs:
        return []
    client = web.services.tasks
    try:
        return [task for task, _ in client.create(specs)]
    except Conflict:
        pass
    # One key reused with another body refuses the whole transaction: retry one by one so
    # that only the conflicting items are rejected.
    tasks = []
    for spec in specs:
        try:
            tasks.append(client.create([spec])[0][0])
        except Conflict as exc:
            rejected.append(
                {
                    "id": None,
                    "idempotency_key": spec.idempotency_key,
                    "reason": "conflict",
                    "message": exc.message,
                }
            )
    return tasks


def _spec(web: Web, index: int, raw: Any) -> TaskSpec:
    prefix = f"created[{index}]."
    spec = parse_task(raw, max_payload_bytes=web.services.tasks.payload_limit, prefix=prefix)
    if spec.idempotency_key is None:
        message = "is required for a task created offline"
        field = f"{prefix}idempotency_key"
        raise ValidationError(f"{field} {message}", details=[{"field": field, "message": message}])
    return spec
