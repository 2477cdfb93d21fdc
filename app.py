"""DTQ's HTTP API: a routing table. Each view reads its request and makes one call into
``chalicelib``; ``chalicelib.api.http`` wraps every view (auth, body checks, error shape)
and ``chalicelib.api.web`` builds the services once per process.
"""

from __future__ import annotations

from typing import Any

from chalice import Chalice  # type: ignore[attr-defined]
from chalice.app import CloudWatchEvent, Cron, Rate

from chalicelib.api import (
    dashboard,
    health,
    login,
    metrics,
    queues,
    schedules,
    stats,
    sync,
    tasks,
    web,
    workers,
)
from chalicelib.api.http import ADMIN, PUBLIC, WORKER, Api, Call
from chalicelib.api.openapi import spec
from chalicelib.service import maintenance

app = Chalice(app_name="dtq")
api = Api(app, web.current)


@api.route("/auth/login", "POST", PUBLIC)
def auth_login(call: Call) -> Any:
    return login.login(call.web, call.body())


# -- tasks ---------------------------------------------------------------------------


@api.route("/tasks", "POST", ADMIN)
def create_task(call: Call) -> Any:
    return tasks.create(call.web, call.body(), call.header("idempotency-key"))


@api.route("/tasks/batch", "POST", ADMIN)
def create_tasks(call: Call) -> Any:
    return tasks.create_batch(call.web, call.body())


@api.route("/tasks", "GET", ADMIN)
def list_tasks(call: Call) -> Any:
    return tasks.list_tasks(call.web, call.query(tasks.LIST_PARAMS))


@api.route("/tasks/{id}", "GET", WORKER)
def get_task(call: Call) -> Any:
    lease_token = call.header("x-lease-token")
    params = call.query(("wait",))
    return tasks.get(call.web, call.params["id"], call.principal, lease_token, params)


@api.route("/tasks/{id}/cancel", "POST", ADMIN)
def cancel_task(call: Call) -> Any:
    return tasks.cancel(call.web, call.params["id"])


@api.route("/tasks/{id}/retry", "POST", ADMIN)
def retry_task(call: Call) -> Any:
    return tasks.retry(call.web, call.params["id"])


@api.route("/dead-letter", "GET", ADMIN)
def list_dead_letters(call: Call) -> Any:
    params = call.query(("queue", "name", "limit", "cursor"))
    return tasks.list_tasks(call.web, params, status="dead")


@api.route("/dead-letter/replay", "POST", ADMIN)
def replay_dead_letters(call: Call) -> Any:
    return tasks.replay_dead(call.web, call.body())


# -- queues --------------------------------------------------------------------------


@api.route("/queues", "GET", ADMIN)
def list_queues(call: Call) -> Any:
    return queues.list_queues(call.web)


@api.route("/queues/{name}", "GET", ADMIN)
def get_queue(call: Call) -> Any:
    return queues.get_queue(call.web, call.params["name"])


@api.route("/queues/{name}", "PATCH", ADMIN)
def configure_queue(call: Call) -> Any:
    return queues.patch_queue(call.web, call.params["name"], call.body())


# -- workers -------------------------------------------------------------------------


@api.route("/workers/register", "POST", WORKER)
def register_worker(call: Call) -> Any:
    return workers.register(call.web, call.body())


@api.route("/workers", "GET", ADMIN)
def list_workers(call: Call) -> Any:
    return workers.list_workers(call.web)


@api.route("/tasks/claim", "POST", WORKER)
def claim_tasks(call: Call) -> Any:
    return workers.claim(call.web, call.body())


@api.route("/tasks/wait", "POST", WORKER)
def wait_for_tasks(call: Call) -> Any:
    return workers.wait(call.web, call.body())


@api.route("/tasks/{id}/lease", "POST", WORKER)
def extend_lease(call: Call) -> Any:
    return workers.extend(call.web, call.params["id"], call.body())


@api.route("/tasks/{id}/release", "POST", WORKER)
def release_task(call: Call) -> Any:
    return workers.release(call.web, call.params["id"], call.body())


@api.route("/tasks/{id}/progress", "POST", WORKER)
def report_progress(call: Call) -> Any:
    return workers.progress(call.web, call.params["id"], call.body())


@api.route("/tasks/sync", "POST", WORKER)
def sync_tasks(call: Call) -> Any:
    return sync.sync(call.web, call.body())


# -- operations ----------------------------------------------------------------------


@api.route("/health", "GET", PUBLIC)
def get_health(call: Call) -> Any:
    return health.health(call.web)


@api.route("/metrics", "GET", PUBLIC)
def get_metrics(call: Call) -> Any:
    return metrics.serve(call.web, call.query(("format",)), call.header("accept"))


@api.route("/stats/timeline", "GET", ADMIN)
def get_timeline(call: Call) -> Any:
    return stats.get_timeline(call.web, call.query(stats.TIMELINE_PARAMS))


@api.route("/openapi.json", "GET", PUBLIC)
def get_openapi(call: Call) -> Any:
    return spec.document()


# -- the web dashboard (chalicelib/api/dashboard) --------------------------------------


@api.route("/dashboard", "GET", PUBLIC)
def dashboard_page(call: Call) -> Any:
    return dashboard.page()


@api.route("/dashboard/static/{asset}", "GET", PUBLIC)
def dashboard_asset(call: Call) -> Any:
    return dashboard.asset(call.params["asset"])


# -- schedules -----------------------------------------------------------------------


@api.route("/schedules", "POST", ADMIN)
def create_schedule(call: Call) -> Any:
    return schedules.create(call.web, call.body())


@api.route("/schedules", "GET", ADMIN)
def list_schedules(call: Call) -> Any:
    return schedules.list_schedules(call.web)


@api.route("/schedules/preview", "GET", ADMIN)
def preview_schedule(call: Call) -> Any:
    return schedules.preview_fires(call.web, call.query(schedules.PREVIEW_PARAMS))


@api.route("/schedules/{id}", "GET", ADMIN)
def get_schedule(call: Call) -> Any:
    return schedules.get(call.web, call.params["id"])


@api.route("/schedules/{id}", "PATCH", ADMIN)
def update_schedule(call: Call) -> Any:
    return schedules.update(call.web, call.params["id"], call.body())


@api.route("/schedules/{id}", "DELETE", ADMIN)
def delete_schedule(call: Call) -> Any:
    return schedules.delete(call.web, call.params["id"])


@api.route("/schedules/{id}/run", "POST", ADMIN)
def run_schedule(call: Call) -> Any:
    return schedules.run(call.web, call.params["id"])


# -- scheduled functions: EventBridge rules in AWS, `dtq scheduler` locally -----------


@app.schedule(Rate(1, unit=Rate.MINUTES))
def cron_tick(event: CloudWatchEvent) -> dict[str, Any]:
    return maintenance.on_cron_tick(web.current().services, event.time)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def reap_leases(event: CloudWatchEvent) -> dict[str, Any]:
    return maintenance.on_reap(web.current().services)


@app.schedule(Rate(5, unit=Rate.MINUTES))
def reconcile(event: CloudWatchEvent) -> dict[str, Any]:
    return maintenance.on_reconcile(web.current().services)


@app.schedule(Cron(15, "*", "*", "*", "?", "*"))
def retention(event: CloudWatchEvent) -> dict[str, Any]:
    return maintenance.on_retention(web.current().services, event.time, event.context)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def record_flush(event: CloudWatchEvent) -> dict[str, Any]:
    return maintenance.on_record_flush(web.current().services, event.context)


@app.schedule(Rate(1, unit=Rate.MINUTES))
def deliver_notifications(event: CloudWatchEvent) -> dict[str, Any]:
    return maintenance.on_deliver_notifications(web.current().services, event.context)
