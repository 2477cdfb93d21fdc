"""Worker endpoints: register/heartbeat, the fleet, claiming tasks, extending leases."""

from __future__ import annotations

import time
import uuid
from typing import Any

from chalicelib.api.web import Web
from chalicelib.core import forms
from chalicelib.core.clock import from_ms, iso
from chalicelib.core.forms import Form
from chalicelib.core.models import progress_problem
from chalicelib.service.fleet import HEARTBEAT_INTERVAL_S

MAX_LEASE_S = 86_400
#: Longest ``POST /tasks/wait``: well inside API Gateway's 29 s and common proxy timeouts.
MAX_WAIT_S = 20.0
WAIT_SLICE_S = 1.0


def register(web: Web, body: Any) -> dict[str, Any]:
    form = Form(body, {"worker_id", "queues", "hostname", "concurrency", "mode"})
    worker_id = form.text("worker_id", required=False, max_len=200, name=True)
    queues = form.names("queues")
    hostname = form.text("hostname", max_len=255)
    concurrency = form.integer("concurrency", 1, 10_000, required=True)
    mode = form.choice("mode", ("redis", "http"))
    form.done()
    assert hostname is not None and concurrency is not None and mode is not None
    svc = web.services
    new = worker_id is None or svc.redis.zscore(svc.keys.workers, worker_id) is None
    worker_id = worker_id or uuid.uuid4().hex
    # The Postgres row is written on registration only, so that a heartbeat keeps
    # working (on Redis alone) while Postgres is down.
    web.fleet.heartbeat(
        worker_id, queues=queues, hostname=hostname, concurrency=concurrency, mode=mode, record=new
    )
    return {"worker_id": worker_id, "heartbeat_interval_seconds": HEARTBEAT_INTERVAL_S}


def list_workers(web: Web) -> dict[str, Any]:
    return {"workers": web.fleet.describe()}


def claim(web: Web, body: Any) -> dict[str, Any]:
    form = Form(body, {"worker_id", "queues", "max", "lease_seconds"})
    worker_id = form.text("worker_id", max_len=200, name=True)
    queues = form.names("queues")
    want = form.integer("max", 1, 100) or 1
    lease_s = form.integer("lease_seconds", 1, MAX_LEASE_S) or web.settings.lease_seconds
    form.done()
    assert worker_id is not None
    tasks, retry_after_ms = web.services.tasks.claim(queues, worker_id, want, lease_s * 1000)
    return {"tasks": tasks, "retry_after_ms": retry_after_ms}


def wait(web: Web, body: Any) -> dict[str, Any]:
    """Block until an enqueue signals one of the queues, or the timeout passes: an idle
    worker in HTTP mode wakes within milliseconds of an enqueue instead of polling."""
    form = Form(body, {"queues", "timeout_seconds"})
    queues = form.names("queues")
    timeout_s = form.number("timeout_seconds", 0.0, MAX_WAIT_S) or 1.0
    form.done()
    queue = web.services.queue
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        # In slices shorter than the Redis client's socket timeout.
        if queue.wait_for_work(queues, min(left, WAIT_SLICE_S)):
            return {"work": True}
    return {"work": False}


def extend(web: Web, raw_id: str, body: Any) -> dict[str, Any]:
    task_id = forms.task_id(raw_id)
    form = Form(body, {"lease_token", "extend_seconds"})
    token = form.text("lease_token", max_len=200)
    extend_s = form.integer("extend_seconds", 1, MAX_LEASE_S) or web.settings.lease_seconds
    form.done()
    assert token is not None
    client = web.services.tasks
    expires_ms, canceled = client.queue.extend(
        client.queue_of(task_id), task_id, token, extend_s * 1000
    )
    return {"lease_expires_at": iso(from_ms(expires_ms)), "cancel_requested": canceled}


def release(web: Web, raw_id: str, body: Any) -> dict[str, Any]:
    """A worker gives a task back (graceful shutdown): not a failed attempt."""
    task_id = forms.task_id(raw_id)
    form = Form(body, {"lease_token"})
    token = form.text("lease_token", max_len=200)
    form.done()
    assert token is not None
    client = web.services.tasks
    client.queue.release(client.queue_of(task_id), task_id, token)
    return {"released": True}


def progress(web: Web, raw_id: str, body: Any) -> dict[str, Any]:
    """The holder of a running task reports how far it is (a handler's ``ctx.progress``
    in HTTP mode): kept as the task's ``progress``, recorded at most once a second."""
    task_id = forms.task_id(raw_id)
    form = Form(body, {"lease_token", "fraction", "message"})
    token = form.text("lease_token", max_len=200)
    fraction = form.number("fraction", 0.0, 1.0, required=True, lo_open=False)
    message = form.body.get("message", "")
    bad = progress_problem(0.0 if fraction is None else fraction, message)
    if bad is not None:
        form.add(*bad)
    form.done()
    assert token is not None and fraction is not None
    recorded = web.services.tasks.progress(task_id, token, fraction, message)
    return {"recorded": recorded}
