"""The periodic jobs: retention, the reaper, the reconciler and the recorder flush."""

from __future__ import annotations

from datetime import timedelta

from chalicelib.core.clock import utcnow
from chalicelib.core.models import Backoff, Durability, NewTask
from chalicelib.service import maintenance
from chalicelib.service.deps import Services
from chalicelib.service.firing import fire_due
from chalicelib.service.recorder import Recorder
from chalicelib.service.schedules import Schedules
from tests.helpers import wait_until
from tests.schedules.conftest import T0, body, fires_of


def _age(services: Services, task_id: str, days: int, status: str | None = None) -> None:
    with services.store.connection() as conn:
        conn.execute(
            "UPDATE dtq_tasks SET created_at = now() - make_interval(days => %(d)s),"
            " finished_at = CASE WHEN %(st)s::text IS NULL THEN NULL"
            " ELSE now() - make_interval(days => %(d)s) END,"
            " status = COALESCE(%(st)s, status) WHERE id = %(id)s",
            {"d": days, "st": status, "id": task_id},
        )


def test_retention_purges_old_terminal_tasks_only(services: Services) -> None:
    c = services.tasks
    old_done, old_dead, old_live, new_done = (c.enqueue("t")["id"] for _ in range(4))
    _age(services, old_done, 40, "succeeded")
    _age(services, old_dead, 31, "dead")
    _age(services, old_live, 40)  # still queued: never purged, however old
    _age(services, new_done, 3, "succeeded")
    out = maintenance.purge(services, utcnow(), batch=1)  # batches of one: the loop runs
    assert out.tasks == 2
    assert services.store.get_task(old_done) is None and services.store.get_task(old_dead) is None
    assert services.store.get_task(old_live) is not None
    assert services.store.get_task(new_done) is not None


def test_retention_keeps_each_schedules_newest_fire(services: Services) -> None:
    schedules = Schedules(services.tasks)
    created = schedules.create(body("old", catchup="all"), T0)
    fire_due(services.tasks, T0 + timedelta(minutes=5))
    out = maintenance.purge(services, T0 + timedelta(days=31), batch=2)
    assert out.fires == 4
    assert [f["fire_at"] for f in fires_of(services, created["id"])] == [T0 + timedelta(minutes=5)]


def test_reaper_expires_the_leases_of_an_idle_queue(services: Services) -> None:
    c, q = services.tasks, services.queue
    task = c.enqueue("t", {}, queue="idle", max_attempts=3)
    [lease] = q.claim(["idle"], "w1", 1, 50).leases
    assert lease.task_id == task["id"]
    # Nobody claims from "idle" again: only the reaper can notice the lapsed lease.
    wait_until(lambda: maintenance.reap(services).get("idle", (0, 0))[1] == 1, 5, "the reaper")
    live = q.live("idle", task["id"])
    assert live is not None and live.status in ("retrying", "queued")


def test_reconciler_restores_recorded_tasks_and_reports_unrecorded_ones(
    services: Services,
) -> None:
    c, q = services.tasks, services.queue
    task = c.enqueue("t", {"n": 1})
    # Redis lost the task (say it was created while Redis was failing over).
    k = services.keys.queue("default")
    services.redis.delete(k.task(task["id"]))
    services.redis.zrem(k.ready, task["id"])
    stray = NewTask(
        id="00000000-0000-4000-8000-000000000001",
        name="t",
        queue="default",
        priority=5,
        payload={},
        payload_json="{}",
        max_attempts=1,
        timeout_seconds=30,
        backoff=Backoff(),
        run_at_ms=0,
        created_at_ms=0,
        scheduled=False,
    )
    q.enqueue_many([stray])  # in Redis, never recorded
    out = maintenance.reconcile(services)
    assert out.restored == 1 and q.live("default", task["id"]) is not None
    assert out.unrecorded == [stray.id]
    assert maintenance.reconcile(services).restored == 0


def test_a_task_waiting_for_the_recorder_is_not_reported_as_unrecorded(
    services: Services,
) -> None:
    """Durability "queue": in Redis before its row; the reconciler knows the difference."""
    services.queue.configure("fast", durability=Durability.QUEUE)
    task = services.tasks.enqueue("t", queue="fast")
    assert services.store.get_task(task["id"]) is None
    out = maintenance.reconcile(services)
    assert out.sampled >= 1 and out.unrecorded == []
    # Its created event gone unrecorded (as if a stream entry were lost): now it is stray.
    services.redis.delete(services.keys.queue("fast").events)
    assert maintenance.reconcile(services).unrecorded == [task["id"]]


def test_flush_records_pending_transitions(services: Services) -> None:
    c, q = services.tasks, services.queue
    task = c.enqueue("t")
    assert len(q.claim(["default"], "w1", 1, 30_000).leases) == 1
    assert maintenance.flush_record(services, budget_s=5) >= 1
    row = services.store.get_task(task["id"])
    assert row is not None and row["status"] == "running" and row["worker_id"] == "w1"
    assert Recorder(q, services.store, "other").drain() == 0


def test_event_now_is_the_later_of_the_event_time_and_the_wall_clock() -> None:
    wall = T0 + timedelta(seconds=30)
    assert maintenance.event_now("2026-11-28T12:05:00Z", wall) == T0 + timedelta(minutes=5)
    assert maintenance.event_now("2015-11-11T21:29:54Z", wall) == wall
    assert maintenance.event_now("garbage", wall) == wall
    assert maintenance.event_now(None, wall) == wall
