"""Workers in Redis Cluster mode (``DTQ_REDIS_CLUSTER=true``) against the real three-node
cluster of tests/cluster/fixtures.py: queues live in different slots, so anything that
sends keys of two queues in one command, or a script inside a pipeline (redis-py refuses
that under Cluster), fails here. The other paths: tests/cluster/."""

from __future__ import annotations

import threading

from chalicelib.core.settings import Settings
from chalicelib.service.deps import Services
from chalicelib.service.recorder import Recorder
from tests.cluster.fixtures import QUEUES
from tests.workers.conftest import SpawnWorker

# The cluster and the ``cluster`` Services on it: tests/cluster/fixtures.py.


def test_enqueue_work_record_and_cancel_across_slots(
    cluster: Services, spawn_worker: SpawnWorker, settings: Settings
) -> None:
    bodies = [
        {"name": "dtq.echo", "queue": q, "payload": {"i": i}} for i in range(40) for q in QUEUES
    ]
    created = cluster.tasks.enqueue_many(bodies)
    doomed = cluster.tasks.enqueue("dtq.echo", queue="beta", delay_seconds=3600)
    _, canceled_now = cluster.tasks.cancel(doomed["id"])
    assert canceled_now
    worker = spawn_worker(
        "--queues",
        ",".join(QUEUES),
        "--concurrency",
        "4",
        "--burst",
        "--record",
        "off",
        redis_url=cluster.settings.redis_url,
        env={"DTQ_REDIS_CLUSTER": "true"},
    )
    assert worker.wait(60) == 0
    for task in created:
        assert (cluster.queue.task_hash(task["queue"], task["id"]) or {}).get("st") == "succeeded"
    Recorder(cluster.queue, cluster.store, "test").drain()
    statuses = {t["status"] for t in cluster.tasks.list(limit=200)[0] if t["id"] != doomed["id"]}
    assert statuses == {"succeeded"}
    assert cluster.tasks.get(doomed["id"])["status"] == "canceled"


def test_an_idle_wait_over_queues_in_several_slots_wakes_on_any(cluster: Services) -> None:
    for q in QUEUES:
        cluster.redis.delete(cluster.keys.queue(q).signal)
    signal = cluster.keys.queue(QUEUES[-1]).signal
    timer = threading.Timer(0.3, lambda: cluster.tasks.enqueue("t", queue=QUEUES[-1]))
    timer.start()
    assert cluster.queue.wait_for_work(QUEUES, 10.0)
    timer.join()
    assert cluster.redis.llen(signal) == 0  # it took the last queue's wake-up signal
