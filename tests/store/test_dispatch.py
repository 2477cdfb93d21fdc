"""Tasks accepted while Redis is unreachable: the dispatch backlog (chalicelib/service/dispatch.py).

Redis is "down" behind a TCP proxy the test cuts (every connection dropped, new ones
refused) and restores, so the shared test Redis itself is never touched.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from chalice.test import Client as HttpClient

import app as app_module
from chalicelib.api import web
from chalicelib.api.auth import Role
from chalicelib.core.clock import utcnow
from chalicelib.core.settings import Settings
from chalicelib.service import deps
from chalicelib.service.deps import Services
from chalicelib.service.dispatch import Batch, Dispatcher
from chalicelib.service.recorder import Recorder
from tests.helpers import wait_until
from tests.workers.procs import Proxy


def through(settings: Settings, proxy: Proxy) -> Services:
    """Services of another process whose Redis is behind the proxy."""
    db = urlsplit(settings.redis_url).path
    url = f"redis://127.0.0.1:{proxy.port}{db}"
    return deps.build(dataclasses.replace(settings, redis_url=url, io_timeout_seconds=0.5))


@pytest.fixture
def cut_off(settings: Settings, proxy: Proxy) -> Iterator[Services]:
    svc = through(settings, proxy)
    yield svc
    svc.close()


def backlog(services: Services) -> list[dict[str, Any]]:
    with services.store.connection() as conn:
        sql = "SELECT task_id::text AS id, next_at <= now() AS due FROM dtq_dispatch_backlog"
        return conn.execute(sql).fetchall()


def ready_ids(services: Services, queue: str = "default") -> list[str]:
    return [m.decode() for m in services.redis.zrange(services.keys.queue(queue).ready, 0, -1)]


def post(
    http: HttpClient,
    token: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> Any:
    sent = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return http.http.request(
        "POST", path, headers=sent | (headers or {}), body=json.dumps(body).encode()
    )


def test_tasks_accepted_while_redis_is_down_are_dispatched_by_running_recorders(
    services: Services, proxy: Proxy, cut_off: Services, settings: Settings
) -> None:
    proxy.cut()
    context = web.use(cut_off)
    assert context is not None
    token, _ = context.issuer.issue("admin", Role.ADMIN, utcnow())
    try:
        with HttpClient(app_module.app) as http:
            singles = [
                post(http, token, "/tasks", {"name": "t", "payload": {"i": i}}) for i in range(12)
            ]
            keyed = post(http, token, "/tasks", {"name": "t"}, {"Idempotency-Key": "k-1"})
            batch = post(http, token, "/tasks/batch", {"tasks": [{"name": "t"}] * 30})
    finally:
        web.use(None)
    assert [r.status_code for r in singles] == [201] * 12
    assert (keyed.status_code, batch.status_code) == (201, 201)
    ids = [r.json_body["id"] for r in (*singles, keyed)]
    ids += [t["id"] for t in batch.json_body["tasks"]]
    assert all(services.store.get_task(i) is not None for i in ids)  # committed first
    assert sorted(r["id"] for r in backlog(services)) == sorted(ids)
    assert ready_ids(services) == []

    # Two recorder loops, as two processes would run them, started while Redis is down;
    # no reconciler runs anywhere in this test.
    loops = [through(settings, proxy) for _ in range(2)]
    stop = threading.Event()
    threads = [
        threading.Thread(target=Recorder(s.queue, s.store, f"rec{i}").run, args=(stop,))
        for i, s in enumerate(loops)
    ]
    for t in threads:
        t.start()
    try:
        proxy.restore()
        wait_until(
            lambda: len(ready_ids(services)) == len(ids), 20, "every accepted task to be in Redis"
        )
        wait_until(lambda: not backlog(services), 10, "the backlog to empty")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for s in loops:
            s.close()

    assert sorted(ready_ids(services)) == sorted(ids)
    claimed: list[str] = []
    while leases := services.queue.claim(["default"], "w", 100, 30_000).leases:
        claimed += [lease.task_id for lease in leases]
    assert sorted(claimed) == sorted(ids)  # each task exactly once
    # One restore each: a second one (the other dispatcher) would have found it in Redis
    # and changed nothing, so each history holds one "recovered" event.
    Recorder(services.queue, services.store, "check").drain()
    for task_id in ids:
        events = [e["event"] for e in services.tasks.get(task_id)["history"]]
        assert events.count("recovered") == 1, events


def test_rows_of_finished_or_dispatched_tasks_are_dropped_and_the_rest_restored(
    services: Services, proxy: Proxy, cut_off: Services
) -> None:
    proxy.cut()
    finished, reached, never = (cut_off.tasks.enqueue("t", {"n": n}) for n in range(3))
    assert len(backlog(services)) == 3
    q, qk = services.queue, services.keys.queue("default")
    # Meanwhile `finished` ran to completion (its Redis hash expired since), and
    # `reached` did reach Redis (the create only lost the reply) and is running.
    for task in (finished, reached):
        row = services.store.get_task(task["id"])
        assert row is not None and services.tasks.restore(row)
    [lease] = q.claim(["default"], "w", 1, 30_000).leases
    assert lease.task_id == finished["id"]
    q.complete("default", lease.task_id, lease.lease_token, "null")
    [running] = q.claim(["default"], "w", 1, 30_000).leases
    assert running.task_id == reached["id"]
    Recorder(q, services.store, "r").drain()
    services.redis.delete(qk.task(finished["id"]))
    assert services.store.get_task(finished["id"])["status"] == "succeeded"  # type: ignore[index]

    done = Dispatcher(services.tasks).dispatch_once()

    assert done == Batch(taken=3, restored=1, dropped=2)
    assert backlog(services) == []
    assert services.queue.task_hash("default", finished["id"]) is None  # never started again
    assert services.redis.hget(qk.task(reached["id"]), "st") == b"running"
    assert ready_ids(services) == [never["id"]]


def test_redis_failing_mid_dispatch_leaves_the_rows_due_at_once(
    services: Services, proxy: Proxy, cut_off: Services
) -> None:
    proxy.cut()
    ids = [cut_off.tasks.enqueue("t")["id"] for _ in range(3)]
    dispatcher = Dispatcher(cut_off.tasks)
    with pytest.raises(redis.ConnectionError):
        dispatcher.dispatch_once()
    # Not hidden for the lease: the next look, once Redis answers, takes them.
    assert sorted(backlog(services), key=lambda r: r["id"]) == [
        {"id": i, "due": True} for i in sorted(ids)
    ]
    assert dispatcher.poll(now=0.0) is None  # a failure is logged, never raised
    proxy.restore()
    assert dispatcher.poll(now=0.5) is None  # looked 0.5 s ago: not due yet
    assert dispatcher.poll(now=1.0) == Batch(taken=3, restored=3, dropped=0)
    assert sorted(ready_ids(services)) == sorted(ids)
    assert backlog(services) == []


def test_dispatchers_share_the_backlog_and_a_dead_ones_rows_return_after_the_lease(
    services: Services, proxy: Proxy, cut_off: Services
) -> None:
    proxy.cut()
    ids = sorted(cut_off.tasks.enqueue("t")["id"] for _ in range(5))
    store = services.store
    first = store.take_undispatched(3, lease_s=30)
    assert [str(r["id"]) for r in first] == ids[:3]  # oldest first
    assert [str(r["id"]) for r in store.take_undispatched(10, lease_s=30)] == ids[3:]
    assert store.take_undispatched(10, lease_s=30) == []  # all held
    # A dispatcher that died holding its rows: they are due again once its lease ends.
    with psycopg.connect(services.settings.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE dtq_dispatch_backlog SET next_at = now() - interval '1 second'"
            " WHERE task_id = ANY(%s::uuid[])",
            (ids[:3],),
        )
    assert [str(r["id"]) for r in store.take_undispatched(10, lease_s=30)] == ids[:3]


def test_an_empty_backlog_costs_one_look_a_second(services: Services) -> None:
    dispatcher = Dispatcher(services.tasks, poll_s=1.0)
    assert dispatcher.poll(now=100.0) == Batch()
    assert [dispatcher.poll(now=100.0 + t) for t in (0.1, 0.5, 0.99)] == [None] * 3
    assert dispatcher.poll(now=101.0) == Batch()
