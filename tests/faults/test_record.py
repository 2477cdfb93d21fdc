"""One bad entry cannot stop the record.

A far-future ``run_at`` used to reach the event stream as ``2.53402300799e+14``, which
PostgreSQL refuses as a bigint; the recorder retried that batch forever and every entry
read with it, other queues included, never reached the record. Now the bound is checked
at the door (400 naming the field), events carry integers exactly, and an entry
PostgreSQL refuses anyway is parked, so the rest of the record moves on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.faults.cluster import Cluster, task, wait_for


def test_far_future_tasks_and_a_poison_entry_do_not_stop_the_record(cluster: Cluster) -> None:
    api = cluster.api()
    status, body = api.call(
        "POST", "/tasks", {"name": "dtq.noop", "run_at": "9999-12-31T23:59:59+00:00"}
    )
    assert status == 400, body
    assert body["error"]["details"][0]["field"] == "run_at"

    far = (datetime.now(UTC) + timedelta(days=9 * 365)).isoformat()
    status, created = api.call("POST", "/tasks", {"name": "dtq.noop", "run_at": far})
    assert status == 201, created
    status, _ = api.call("POST", f"/tasks/{created['id']}/cancel")
    assert status == 200

    # A stream entry PostgreSQL refuses (what old scripts wrote for such a task), in the
    # middle of live traffic on two queues.
    assert cluster.redis is not None
    with cluster.redis.client() as r:
        # cjson's way of writing year 9999 in ms, which PostgreSQL refuses as a bigint.
        poison = json.dumps(
            [
                {
                    "id": created["id"],
                    "v": 9,
                    "ev": "canceled",
                    "st": "canceled",
                    "at": 1,
                    "run": "RUN",
                }
            ]
        ).replace('"RUN"', "2.53402300799e+14")
        r.xadd(cluster.keys.queue("default").events, {"d": poison})
    cluster.worker("a", queues="default,mail", concurrency=4, lease_seconds=2)
    ids = api.enqueue_batch([task(0.0) for _ in range(100)])
    ids += api.enqueue_batch([{**task(0.0), "queue": "mail"} for _ in range(100)])

    report = cluster.check("far-future run_at and a poison stream entry", [*ids, created["id"]])
    report.assert_clean()
    assert report.statuses == {"succeeded": 200, "canceled": 1}
    with cluster.pg() as conn:
        parked = conn.execute("SELECT entry, error FROM dtq_parked_events").fetchall()
    assert len(parked) == 1 and "2.53402300799e+14" in parked[0]["entry"], parked
    wait_for(lambda: cluster.unrecorded() == 0, 10, "the streams to be empty", cluster.describe)
