"""Everything besides the HTTP API and the workers on the three-node Redis Cluster: the
lock helper, ``dtq recover`` after every node lost its data, the reconciler after one
node lost its data, the reaper, the scheduler, the recorder (every transition from
every shard), and the start-up checks of the nodes."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from bench.redis_server import LocalCluster
from chalicelib.core.errors import ConfigError
from chalicelib.core.models import Durability, Outcome
from chalicelib.core.settings import Settings
from chalicelib.queue.locks import DistributedLock, LockNotAcquired, LockScripts
from chalicelib.service import deps, maintenance
from chalicelib.service.deps import Services
from chalicelib.service.epoch import split
from chalicelib.service.firing import fire_due
from chalicelib.service.recorder import Recorder
from chalicelib.service.schedules import Schedules
from tests.cluster.fixtures import QUEUES
from tests.helpers import wait_until
from tests.workers.procs import DTQ, worker_env

T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
#: The last recorded event of a task in these statuses.
_LAST_EVENT = {"succeeded": "succeeded", "dead": "dead", "canceled": "canceled"}


def node_of(services: Services, cluster: LocalCluster, key: str) -> redis.Redis:
    """A plain client of the node that holds ``key`` (the caller closes it)."""
    index = cluster.node_of_slot(services.redis.keyslot(key))
    return redis.Redis(port=cluster.ports[index])


def recorded(services: Services, task_id: str) -> dict[str, Any]:
    row = services.store.get_task(task_id)
    assert row is not None
    return dict(row)


def lock_names_on_every_node(services: Services, cluster: LocalCluster) -> list[str]:
    """One lock name per node: lock keys are hash-tagged by name, so locks spread too."""
    by_node: dict[int, str] = {}
    i = 0
    while len(by_node) < len(cluster.ports):
        name = f"invoice:{i}"
        slot = services.redis.keyslot(services.keys.user_lock(name))
        by_node.setdefault(cluster.node_of_slot(slot), name)
        i += 1
    return list(by_node.values())


def test_locks_on_every_node_fence_contend_and_survive_a_script_flush(
    services: Services, redis_cluster: LocalCluster
) -> None:
    scripts = LockScripts(services.redis, services.queue.on_new_server)
    for name in lock_names_on_every_node(services, redis_cluster):
        first = DistributedLock(scripts, services.keys, name, ttl_s=30)
        other = DistributedLock(scripts, services.keys, name, ttl_s=30)
        fence = first.acquire()
        with pytest.raises(LockNotAcquired):
            other.acquire(blocking=False)
        assert first.extend() > 0
        assert first.release()
        assert other.acquire(timeout_s=5) > fence
        other.release()
    # Every node lost its script cache (a restart would too): the lock reloads there.
    services.redis.script_flush()  # sent to every primary
    name = lock_names_on_every_node(services, redis_cluster)[-1]
    with DistributedLock(scripts, services.keys, name) as fence:
        assert fence > 0


def test_the_eviction_policy_of_every_node_is_checked(
    services: Services, redis_cluster: LocalCluster
) -> None:
    services.queue.check_eviction_policy(allow_evicting=False)
    default = services.redis.get_default_node().port
    [other] = [p for p in redis_cluster.ports if p != default][:1]
    node = redis.Redis(port=other)
    try:
        node.config_set("maxmemory-policy", "allkeys-lru")
        with pytest.raises(ConfigError, match="allkeys-lru"):
            services.queue.check_eviction_policy(allow_evicting=False)
        services.queue.check_eviction_policy(allow_evicting=True)
    finally:
        node.config_set("maxmemory-policy", "noeviction")
        node.close()


def test_dtq_recover_after_every_node_lost_its_data(
    services: Services, cluster_settings: Any
) -> None:
    q, tasks = services.queue, services.tasks
    running = tasks.enqueue("t", queue="alpha")["id"]
    finished = tasks.enqueue("t", queue="delta")["id"]
    queued = {name: tasks.enqueue("t", queue=name)["id"] for name in QUEUES}
    later = tasks.enqueue("t", queue="beta", delay_seconds=3600)["id"]
    [old] = q.claim(["alpha"], "w1", 1, 60_000).leases
    [done] = q.claim(["delta"], "w1", 1, 60_000).leases
    assert (old.task_id, done.task_id) == (running, finished)
    q.complete("delta", finished, done.lease_token, "null")
    Recorder(q, services.store, "test").drain()

    services.redis.flushall()  # every primary: the whole cluster lost its data
    env = {**worker_env(cluster_settings), "DTQ_REDIS_CLUSTER": "true"}
    proc = subprocess.run([DTQ, "recover"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "restored 6 into Redis" in proc.stdout, proc.stdout

    live = {t: q.live(recorded(services, t)["queue"], t) for t in [running, later, finished]}
    assert live[finished] is None  # finished: never started again
    assert live[later] is not None and live[later].status == "scheduled"
    leases = q.claim(QUEUES, "w2", 100, 60_000).leases
    assert sorted(le.task_id for le in leases) == sorted([running, *queued.values()])
    [again] = [le for le in leases if le.task_id == running]
    assert split(again.fence)[0] > split(old.fence)[0]  # a new epoch: no fence repeats
    q.report_many([Outcome(le.queue, le.task_id, le.lease_token, True) for le in leases], "w2")
    Recorder(q, services.store, "test").drain()
    assert recorded(services, running)["status"] == "succeeded"
    assert "recovered" in [e["event"] for e in services.store.history(running)]


def test_the_reconciler_restores_the_queues_of_a_node_that_lost_its_data(
    services: Services, redis_cluster: LocalCluster
) -> None:
    q = services.queue
    ids = {
        name: [services.tasks.enqueue("t", queue=name)["id"] for _ in range(2)] for name in QUEUES
    }
    leases = q.claim(QUEUES, "w1", 100, 60_000).leases  # every task has been in Redis
    fences = {le.task_id: le.fence for le in leases}
    recorder = Recorder(q, services.store, "test")  # its consumer groups exist from here on
    recorder.drain()
    epoch = q.published_epoch()
    assert epoch is not None

    # The node that holds the queue registry loses its data; the other two keep theirs.
    # Its queues' tasks are gone, the other queues' keys survive but the registry that
    # recorders, the reaper and the metrics go by no longer names them.
    lost_node = redis_cluster.node_of_slot(services.redis.keyslot(services.keys.queues))
    lost = [n for n in QUEUES if redis_cluster.node_of_slot(services.redis.keyslot(n)) == lost_node]
    assert lost and len(lost) < len(QUEUES)
    node = redis.Redis(port=redis_cluster.ports[lost_node])
    try:
        node.flushall()
    finally:
        node.close()
    assert set(q.known_queues()) <= set(QUEUES) - set(lost)
    report = maintenance.reconcile(services)
    assert report.restored == 2 * len(lost) and report.unrecorded == []
    assert q.known_queues() == sorted(QUEUES)
    assert (q.published_epoch() or 0) > epoch  # the lost tasks had been in Redis: raised
    again = {le.task_id: le for le in q.claim(lost, "w2", 100, 60_000).leases}
    assert set(again) == {i for name in lost for i in ids[name]}
    assert all(split(le.fence)[0] > split(fences[t])[0] for t, le in again.items())
    outcomes = [le for le in leases if le.queue not in lost] + list(again.values())
    q.report_many([Outcome(le.queue, le.task_id, le.lease_token, True) for le in outcomes])
    recorder.drain()  # the lost streams and consumer groups are made again
    for le in outcomes:
        assert recorded(services, le.task_id)["status"] == "succeeded"


def test_the_reaper_expires_leases_and_promotes_due_tasks_on_every_node(
    services: Services,
) -> None:
    q = services.queue
    for name in QUEUES:
        services.tasks.enqueue("t", queue=name)
        services.tasks.enqueue("t", queue=name, delay_seconds=0.2)
    leases = q.claim(QUEUES, "w1", 100, 1).leases  # leases of 1 ms
    assert len(leases) == len(QUEUES)
    reaped: dict[str, list[int]] = {name: [0, 0] for name in QUEUES}

    def all_reaped() -> bool:
        for name, (promoted, expired) in maintenance.reap(services).items():
            reaped[name][0] += promoted
            reaped[name][1] += expired
        # The expired attempt's retry may fall due (jitter) before the delayed task does:
        # a promotion alone does not say which one moved, so wait on the sets themselves.
        depths = q.depths(QUEUES)
        return all(reaped[n][1] == 1 and depths[n]["scheduled"] == 0 for n in QUEUES)

    wait_until(all_reaped, what="every queue's lease expired and due task promoted")
    for name, d in q.depths(QUEUES).items():
        assert (d["running"], d["scheduled"], d["queued"] + d["retrying"]) == (0, 0, 2), name
        assert reaped[name][0] >= 1, name  # the delayed task was promoted by the reaper


def test_the_scheduler_fires_into_queues_on_every_node(services: Services) -> None:
    schedules = Schedules(services.tasks)
    made = {
        name: schedules.create(
            {
                "name": f"every-minute-{name}",
                "cron": "* * * * *",
                "overlap": "skip",
                "task": {"name": f"job.{name}", "queue": name},
            },
            T0,
        )["id"]
        for name in QUEUES
    }
    assert fire_due(services.tasks, T0 + timedelta(seconds=61)).fired == len(QUEUES)
    depths = services.queue.depths(QUEUES)
    assert {name: d["queued"] for name, d in depths.items()} == dict.fromkeys(QUEUES, 1)
    # overlap "skip" reads each previous run's live state on its node: still queued.
    report = fire_due(services.tasks, T0 + timedelta(seconds=121))
    assert (report.fired, report.skipped) == (0, len(QUEUES))
    leases = services.queue.claim(QUEUES, "w1", 100, 60_000).leases
    assert {le.name for le in leases} == {f"job.{name}" for name in QUEUES}
    services.queue.report_many(
        [Outcome(le.queue, le.task_id, le.lease_token, True) for le in leases]
    )
    assert fire_due(services.tasks, T0 + timedelta(seconds=181)).fired == len(QUEUES)
    assert len(made) == len(QUEUES)


def test_the_recorder_records_every_transition_of_every_shard(
    services: Services, redis_cluster: LocalCluster
) -> None:
    q, tasks = services.queue, services.tasks
    ids: list[str] = []
    for name in QUEUES:
        ok = tasks.enqueue("t", queue=name)["id"]
        retried = tasks.enqueue("t", queue=name, max_attempts=3)["id"]
        dead = tasks.enqueue("t", queue=name, max_attempts=1)["id"]
        running = tasks.enqueue("t", queue=name)["id"]
        canceled = tasks.enqueue("t", queue=name)["id"]
        later = tasks.enqueue("t", queue=name, delay_seconds=3600)["id"]
        ids += [ok, retried, dead, running, canceled, later]
        leases = {le.task_id: le for le in q.claim([name], "w1", 4, 60_000).leases}
        q.complete(name, ok, leases[ok].lease_token, '{"n": 1}')
        assert q.fail(name, retried, leases[retried].lease_token, "again") == "retrying"
        assert q.fail(name, dead, leases[dead].lease_token, "boom") == "dead"
        tasks.cancel(canceled)
    # Two recorders share the streams of the three nodes, as two processes would.
    first, second = Recorder(q, services.store, "r1"), Recorder(q, services.store, "r2")
    while first.drain_once() + second.drain_once():
        pass
    for task_id in ids:
        row = recorded(services, task_id)
        live = q.live(row["queue"], task_id)
        assert live is not None
        assert (row["status"], row["version"]) == (live.status, live.version), task_id
        if live.status in _LAST_EVENT:
            events = [h["event"] for h in services.store.history(task_id)]
            assert events[-1] == _LAST_EVENT[live.status], events
    statuses = sorted(recorded(services, t)["status"] for t in ids[:6])
    assert statuses == sorted(["succeeded", "retrying", "dead", "running", "canceled", "scheduled"])
    for name in QUEUES:
        events = services.keys.queue(name).events
        assert services.redis.xlen(events) == 0
        assert services.redis.xpending(events, "recorder")["pending"] == 0


@pytest.fixture(scope="module")
def one_shard() -> Iterator[LocalCluster]:
    cluster = LocalCluster(1)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_a_one_shard_cluster_checks_its_node_and_runs_tasks(
    cluster_settings: Settings, one_shard: LocalCluster
) -> None:
    # redis-py answers a command sent to every primary bare when there is only one: the
    # epoch check on the first connection and the eviction check must not trip on it.
    svc = deps.build(dataclasses.replace(cluster_settings, redis_url=one_shard.url))
    try:
        svc.queue.check_eviction_policy(allow_evicting=False)
        assert len(svc.queue.server_run_ids()) == 1
        created = svc.tasks.enqueue_many([{"name": "t", "queue": name} for name in QUEUES])
        leases = svc.queue.claim(QUEUES, "w1", 100, 60_000).leases
        assert sorted(le.task_id for le in leases) == sorted(t["id"] for t in created)
        svc.queue.report_many(
            [Outcome(le.queue, le.task_id, le.lease_token, True) for le in leases]
        )
        Recorder(svc.queue, svc.store, "test").drain()
        assert {recorded(svc, t["id"])["status"] for t in created} == {"succeeded"}
    finally:
        svc.redis.flushall()
        svc.close()


def test_durability_queue_on_every_shard(services: Services) -> None:
    """Tasks accepted in Redis alone, on queues of every node: found, read from their
    created events, then recorded by one recorder reading every shard's stream."""
    for queue in QUEUES:
        services.queue.configure(queue, durability=Durability.QUEUE)
    ids = {q: services.tasks.enqueue("t", {"q": q}, queue=q)["id"] for q in QUEUES}
    for queue, task_id in ids.items():
        assert services.store.get_task(task_id) is None
        seen = services.tasks.get(task_id)
        assert (seen["queue"], seen["payload"], seen["status"]) == (queue, {"q": queue}, "queued")
    Recorder(services.queue, services.store, "test").drain()
    for queue, task_id in ids.items():
        row = recorded(services, task_id)
        assert (row["queue"], row["status"]) == (queue, "queued")
