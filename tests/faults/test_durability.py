"""A queue of durability "queue": a task is accepted once it is in Redis, and its row
reaches PostgreSQL through the recorder (docs/guarantees.md, "Durability per queue").

What must hold: with Redis's AOF (``everysec``) a killed Redis process loses nothing; a
Redis that loses its data loses the tasks whose `created` events were not recorded yet,
and only those, and ``dtq recover`` restores every recorded one; PostgreSQL down does not
stop creates.
"""

from __future__ import annotations

from tests.faults.cluster import Api, Cluster, task, wait_for
from tests.faults.test_redis_loss import _wipe


def _queue_mode(api: Api) -> None:
    status, body = api.call("PATCH", "/queues/default", {"durability": "queue"})
    assert (status, body["durability"]) == (200, "queue"), body


def _create(api: Api, n: int) -> list[str]:
    """``n`` single creates, each answered 201."""
    ids = []
    for _ in range(n):
        status, body = api.call("POST", "/tasks", task(0.0))
        assert status == 201, (status, body)
        ids.append(body["id"])
    return ids


def test_redis_killed_with_its_aof_loses_no_task_accepted_in_redis(cluster: Cluster) -> None:
    assert cluster.redis is not None
    api = cluster.api()
    _queue_mode(api)
    # PostgreSQL down: every task below lives in Redis alone (rows and all, in the
    # unrecorded `created` events) when Redis dies.
    cluster.postgres.kill()
    ids = _create(api, 150)
    assert cluster.unrecorded() > 0
    cluster.redis.kill()  # kill -9; the AOF holds what the process wrote
    cluster.postgres.restart()
    cluster.redis.restart()
    cluster.worker("a", concurrency=4, lease_seconds=2)
    report = cluster.check("durability queue: Redis killed, AOF everysec", ids)
    report.assert_clean()
    assert report.statuses == {"succeeded": len(ids)}


def test_redis_data_loss_loses_only_the_unrecorded_tasks_and_recover_restores_the_rest(
    cluster: Cluster,
) -> None:
    assert cluster.redis is not None
    api = cluster.api()
    _queue_mode(api)
    recorded = _create(api, 60)
    wait_for(
        lambda: len(cluster.statuses(recorded)) == len(recorded) and cluster.unrecorded() == 0,
        30,
        "the record to have every row",
        cluster.describe,
    )
    # PostgreSQL goes away: the recorder cannot write, and creates still succeed.
    cluster.postgres.kill()
    window = _create(api, 40)
    # Redis loses everything before any recorder round could write those rows.
    cluster.redis.kill()
    _wipe(cluster.redis)
    cluster.postgres.restart()
    cluster.redis.restart()
    out = cluster.recover()
    assert "epoch" in out, out
    cluster.worker("a", concurrency=4, lease_seconds=2)
    report = cluster.check(
        "durability queue: Redis data lost, dtq recover (the recorded tasks)", recorded
    )
    report.assert_clean()
    assert report.statuses == {"succeeded": len(recorded)}
    # The window's tasks lived in Redis only: lost, and the record says so (404), not a
    # task stuck in some state.
    assert cluster.statuses(window) == {}
    for task_id in window[:5]:
        status, _ = api.call("GET", f"/tasks/{task_id}")
        assert status == 404
    assert not any(r.task_id in set(window) for r in cluster.runs())
