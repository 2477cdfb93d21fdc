"""Queues, health, metrics and the OpenAPI document."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chalice.test import Client
from openapi_spec_validator import validate

import app as app_module
from chalicelib.api import httpstats, metrics, web
from chalicelib.api.auth import Role
from chalicelib.api.openapi import spec as openapi
from chalicelib.api.web import Web
from chalicelib.core.clock import utcnow
from chalicelib.core.settings import Settings
from chalicelib.service import deps
from chalicelib.service.deps import Services
from tests.api.conftest import Http, assert_error
from tests.api.test_tasks import claim, fail
from tests.api.test_workers import result, sync


def test_queues_depth_settings_and_404(admin: Http, worker: Http) -> None:
    admin.post("/tasks", {"name": "t", "queue": "mail", "priority": 2})
    admin.post("/tasks", {"name": "t", "queue": "mail", "delay_seconds": 600})
    [q] = admin.get("/queues").json_body["queues"]
    assert q["name"] == "mail" and q["paused"] is False
    assert q["depth"] == {"scheduled": 1, "queued": 1, "running": 0, "retrying": 0, "dead": 0}
    assert q["oldest_queued_age_seconds"] >= 0
    assert q["rate_limit"] is None and q["concurrency"] is None
    r = admin.patch(
        "/queues/mail",
        {"paused": True, "concurrency": 3, "rate_limit": {"per_second": 2.5, "burst": 5}},
    )
    assert r.status_code == 200
    assert (r.json_body["paused"], r.json_body["concurrency"]) == (True, 3)
    assert r.json_body["rate_limit"] == {"per_second": 2.5, "burst": 5}
    assert claim(worker, queue="mail") == []  # paused: accepts tasks, starts none
    r = admin.patch("/queues/mail", {"paused": False, "concurrency": None, "rate_limit": None})
    assert (r.json_body["concurrency"], r.json_body["rate_limit"]) == (None, None)
    assert len(claim(worker, queue="mail")) == 1
    assert admin.get("/queues/mail").json_body["depth"]["running"] == 1
    assert_error(admin.get("/queues/nope"), 404, "not_found")


def test_durability_is_set_shown_and_used(admin: Http, services: Services) -> None:
    admin.post("/tasks", {"name": "t", "queue": "mail"})
    assert admin.get("/queues/mail").json_body["durability"] == "record"
    r = admin.patch("/queues/mail", {"durability": "queue"})
    assert r.status_code == 200 and r.json_body["durability"] == "queue"
    assert admin.get("/queues").json_body["queues"][0]["durability"] == "queue"
    created = admin.post("/tasks", {"name": "t", "queue": "mail", "payload": {"k": 1}})
    assert created.status_code == 201
    task_id = created.json_body["id"]
    assert services.store.get_task(task_id) is None  # accepted in Redis; not recorded yet
    got = admin.get(f"/tasks/{task_id}").json_body
    assert (got["status"], got["payload"]) == ("queued", {"k": 1})
    assert [e["event"] for e in got["history"]] == ["created", "queued"]
    r = admin.patch("/queues/mail", {"durability": "record"})
    assert r.json_body["durability"] == "record"
    created = admin.post("/tasks", {"name": "t", "queue": "mail"})
    assert services.store.get_task(created.json_body["id"]) is not None


def test_health_ok(anon: Http) -> None:
    r = anon.get("/health")
    assert r.status_code == 200
    assert r.json_body["status"] == "ok"
    for name in ("redis", "postgres"):
        check = r.json_body["checks"][name]
        assert check["status"] == "ok" and check["latency_ms"] >= 0


@pytest.fixture
def broken(settings: Settings) -> Iterator[Http]:
    """The app against a Redis and a PostgreSQL that do not answer."""
    bad = dataclasses.replace(
        settings,
        redis_url="redis://127.0.0.1:1/0",
        database_url="postgresql://postgres@127.0.0.1:1/none",
    )
    svc = deps.build(bad, pool_size=2)
    context = web.use(svc)
    assert context is not None
    token, _ = context.issuer.issue("admin", Role.ADMIN, utcnow())
    with Client(app_module.app) as c:
        yield Http(c, token)
    web.use(None)
    svc.close()


def test_dependencies_down_answer_503_fast(broken: Http) -> None:
    start = time.monotonic()
    r = broken.get("/health")
    assert r.status_code == 503 and r.json_body["status"] == "degraded"
    assert {c["status"] for c in r.json_body["checks"].values()} == {"down"}
    assert time.monotonic() - start < 2
    for method, path, body in (
        ("POST", "/tasks", {"name": "t"}),
        ("GET", "/tasks", None),
        ("GET", "/queues", None),
        ("GET", "/metrics", None),
        ("POST", "/tasks/claim", {"worker_id": "w", "queues": ["q"]}),
    ):
        start = time.monotonic()
        assert_error(broken.call(method, path, body), 503, "unavailable")
        assert time.monotonic() - start < 2, (method, path)


def test_metrics_are_valid_prometheus_text(
    admin: Http, worker: Http, anon: Http, tmp_path: Path
) -> None:
    admin.post("/tasks", {"name": "t"})
    admin.post("/tasks", {"name": "t", "max_attempts": 1})
    [first, second] = claim(worker, 2)
    sync(worker, result(first))
    fail(worker, second)
    worker.post(
        "/workers/register",
        {"queues": ["default"], "hostname": "h", "concurrency": 1, "mode": "http"},
    )
    r = anon.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = r.body.decode()
    sample = tmp_path / "metrics.txt"
    sample.write_text(text)
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, text=True, capture_output=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for line in (
        'task_throughput_total{queue="default"} 1',
        'task_failures_total{queue="default"} 1',
        'task_dead_total{queue="default"} 1',
        'task_retries_total{queue="default"} 0',
        'task_queue_depth{queue="default",status="dead"} 1',
        "workers_alive 1",
        'task_wait_seconds_count{queue="default"} 2',
        'task_run_seconds_bucket{queue="default",le="+Inf"} 2',
    ):
        assert line in text.splitlines(), line
    assert re.search(r'http_requests_total\{route="/tasks",method="POST",status="201"\} 2', text)
    assert 'http_request_duration_seconds_bucket{route="/tasks",method="POST",le="+Inf"} 2' in text


def test_metrics_json_has_the_same_figures(admin: Http, anon: Http) -> None:
    admin.post("/tasks", {"name": "t"})
    as_json = anon.get("/metrics?format=json").json_body
    by_accept = anon.get("/metrics", headers={"Accept": "application/json"}).json_body
    names = {f["name"] for f in as_json["metrics"]}
    assert {"task_queue_depth", "task_throughput_total", "workers_alive"} <= names
    depth = next(f for f in as_json["metrics"] if f["name"] == "task_queue_depth")
    assert {
        "name": "task_queue_depth",
        "labels": {"queue": "default", "status": "queued"},
        "value": 1,
    } in depth["samples"]
    assert [f["name"] for f in by_accept["metrics"]] == [f["name"] for f in as_json["metrics"]]
    assert_error(anon.get("/metrics?format=xml"), 400, "validation_error")


def test_http_figures_are_shared_through_redis(api: Web, services: Services) -> None:
    other = httpstats.HttpStats(services.redis, services.keys.http_stats)
    other.observe("/x", "GET", 200, 0.003)
    other.close()
    assert api.http_stats.read()["n|GET|/x|200"] == 1


def test_histogram_bounds_match_the_lua_scripts() -> None:
    lua = (Path(__file__).parents[2] / "chalicelib/queue/lua/_lib.lua").read_text()
    match = re.search(r"local BUCKETS = \{([^}]*)\}", lua)
    assert match is not None
    assert tuple(float(x) for x in match.group(1).split(",")) == metrics.TASK_BUCKETS


def test_openapi_is_valid_and_covers_every_route(anon: Http) -> None:
    doc = anon.get("/openapi.json").json_body
    validate(doc)
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {(m, p) for p, methods in app_module.app.routes.items() for m in methods}
    assert documented == served
    assert doc == openapi.document()
