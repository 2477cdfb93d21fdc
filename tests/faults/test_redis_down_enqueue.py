"""Tasks accepted while Redis is down start soon after it returns, with the API and
workers alone: no ``dtq scheduler``, so no reconciler (chalicelib/service/dispatch.py)."""

from __future__ import annotations

import time

from tests.faults.cluster import Cluster, task, wait_for

#: Far below the reconciler's 5 minutes, which is what these tasks waited for before.
DISPATCHED_WITHIN_S = 30.0


def test_tasks_accepted_while_redis_is_down_start_when_it_returns_without_a_scheduler(
    cluster: Cluster,
) -> None:
    api = cluster.api()
    a = cluster.worker("a", concurrency=4)
    cluster.redis.kill()
    wait_for(lambda: "offline" in a.text(), 30, "the worker to go offline", cluster.describe)

    ids: list[str] = []
    for _ in range(50):
        status, reply = api.call("POST", "/tasks", task(0.0))
        assert status == 201, (status, reply)  # recorded: accepted even without Redis
        ids.append(reply["id"])
    ids += api.enqueue_batch([task(0.0) for _ in range(50)])
    with cluster.pg() as conn:
        noted = conn.execute("SELECT task_id::text AS id FROM dtq_dispatch_backlog").fetchall()
    assert sorted(r["id"] for r in noted) == sorted(ids)
    assert not cluster.runs()

    restarted = time.time()
    cluster.redis.restart()
    cluster.wait_final(ids, DISPATCHED_WITHIN_S)
    report = cluster.check("tasks accepted while Redis was down, no scheduler", ids)
    report.assert_clean()
    assert report.statuses == {"succeeded": len(ids)}
    runs = cluster.runs()
    assert sorted(r.task_id for r in runs) == sorted(ids)  # each ran once
    assert min(r.start for r in runs) > restarted  # nothing ran before Redis returned
    assert not any(p.name.startswith("scheduler") for p in cluster.procs)
    with cluster.pg() as conn:
        left = conn.execute("SELECT count(*) AS n FROM dtq_dispatch_backlog").fetchone()
    assert left == {"n": 0}
