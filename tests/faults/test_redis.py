"""Redis killed outright (kill -9) mid-drain and started again on its AOF."""

from __future__ import annotations

import time

from tests.faults.cluster import BACK_ONLINE, OFFLINE, Cluster, task, wait_for

LEASE_S = 2.0


def test_redis_killed_and_restarted_loses_no_task(cluster: Cluster) -> None:
    with cluster.redis.client() as r:  # the configuration the README asks for
        config = r.config_get("append*") | r.config_get("maxmemory-policy")
    assert (config["appendonly"], config["appendfsync"]) == ("yes", "everysec")
    assert config["maxmemory-policy"] == "noeviction"
    api = cluster.api()
    a = cluster.worker("a", concurrency=4, lease_seconds=LEASE_S)
    b = cluster.worker("b", concurrency=4, lease_seconds=LEASE_S)
    ids = api.enqueue_batch([task(0.02) for _ in range(300)])

    wait_for(lambda: len(cluster.runs()) >= 60, 30, "60 runs", cluster.describe)
    with cluster.redis.client() as r:
        sec, usec = r.time()
    # No lease granted before the kill outlives this (Redis's clock is the machine's).
    leases_end = int(sec) + int(usec) / 1e6 + LEASE_S
    cluster.redis.kill()
    # Both workers noticed (they journal outcomes and stop claiming), and Redis stays down
    # until the leases they held have run out, so the restart finds them expired.
    wait_for(
        lambda: OFFLINE in a.text() and OFFLINE in b.text(),
        30,
        "the workers to go offline",
        cluster.describe,
    )
    wait_for(lambda: time.time() > leases_end, 30, "the held leases to run out")
    cluster.redis.restart()

    # A kill -9 of the process (not of the machine) keeps every write the AOF was given;
    # leases that ran out meanwhile are retried (re-runs are allowed, and explained).
    report = cluster.check("redis kill -9 + restart (AOF everysec)", ids)
    assert BACK_ONLINE in a.text() and BACK_ONLINE in b.text()
    assert report.statuses == {"succeeded": len(ids)}
    report.assert_clean()
