"""Redis loses everything mid-run; the queue is rebuilt from the Postgres record."""

from __future__ import annotations

from chalicelib.service.deps import Services
from chalicelib.service.recorder import Recorder
from chalicelib.service.recover import restore_missing

LONG = {"base_seconds": 3600, "factor": 1, "max_seconds": 3600, "jitter": False}


def test_flush_mid_run_then_recover_restores_live_tasks_and_reruns_nothing(
    services: Services,
) -> None:
    c, q = services.tasks, services.queue
    now_tasks = c.enqueue_many(
        [{"name": "t", "payload": {"i": i}, "backoff": LONG} for i in range(600)]
    )
    later = c.enqueue_many([{"name": "t", "delay_seconds": 3600} for _ in range(100)])
    other = c.enqueue_many([{"name": "t", "queue": "mail", "priority": 9} for _ in range(50)])
    leases = q.claim(["default"], "w", 100, 30_000).leases
    leases += q.claim(["default"], "w", 100, 30_000).leases
    leases += q.claim(["default"], "w", 100, 30_000).leases
    leases += q.claim(["default"], "w", 100, 30_000).leases
    finished = {lease.task_id for lease in leases[:300]}
    retrying = {lease.task_id for lease in leases[300:350]}
    running = {lease.task_id for lease in leases[350:]}
    for lease in leases[:300]:
        q.complete("default", lease.task_id, lease.lease_token, "null")
    for lease in leases[300:350]:
        q.fail("default", lease.task_id, lease.lease_token, "boom")
    Recorder(q, services.store, "t").drain()
    recorded_run_at = {t["id"]: services.store.get_task(t["id"])["run_at"] for t in later[:5]}  # type: ignore[index]

    # FLUSHALL, as far as this deployment can tell: every key under its prefix is gone
    # (other test sessions may share this Redis, so the test leaves their keys alone).
    for key in services.redis.scan_iter(match=f"{services.settings.key_prefix}:*", count=1000):
        services.redis.delete(key)
    assert services.redis.exists(services.keys.queues) == 0

    report = restore_missing(c)
    assert report.checked == 750 - 300
    assert report.restored == 750 - 300
    assert restore_missing(c).restored == 0  # idempotent

    assert services.queue.known_queues() == ["default", "mail"]  # recorders find them again
    qk = services.keys.queue("default")
    assert services.redis.zcard(qk.scheduled) == 100
    assert services.redis.zcard(qk.retrying) == 50
    assert services.redis.zcard(services.keys.queue("mail").ready) == 50
    for task_id, run_at in recorded_run_at.items():
        assert services.redis.zscore(qk.scheduled, task_id) == int(run_at.timestamp() * 1000)
    for task_id in retrying:
        assert services.redis.hget(qk.task(task_id), "st") == b"retrying"

    reclaimed: set[str] = set()
    while batch := q.claim(["default", "mail"], "w2", 100, 30_000).leases:
        reclaimed |= {lease.task_id for lease in batch}
    expected = ({t["id"] for t in now_tasks} - finished - retrying) | {t["id"] for t in other}
    assert reclaimed == expected
    assert not reclaimed & finished
    assert running <= reclaimed  # held when Redis died: run again (at-least-once)
    # Redis lost tasks it had leased, so the epoch was raised before they came back: the
    # next fence is above any the lost Redis could have handed out (2**32 * epoch + 1),
    # and attempts continue from the record.
    task_id = next(iter(running))
    assert int(services.redis.hget(qk.task(task_id), "fence")) == 2**32 + 1
    assert int(services.redis.hget(qk.task(task_id), "att")) == 2
