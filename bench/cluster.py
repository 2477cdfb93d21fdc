"""The ``cluster`` scenario: does throughput grow with Redis Cluster shards?

The same drain on a one-shard and a three-shard Redis Cluster (bench/redis_server.py's
:class:`LocalCluster`, started here): ``QUEUES`` queues (two per node of the three-shard
cluster), N no-ops spread evenly over them, ``PROCESSES`` worker processes each
listening on its own queues (worker ``i`` on queues ``i`` and ``i + PROCESSES``), in
Redis Cluster mode. The rate is read from the scripts' ``succeeded`` counters of every
queue, polled every 5 ms: tasks completed between 5 % and 95 % of N, over that time, so
worker start-up and the tail are not counted. The CPU of each Redis node (and of the
workers, their recorders and PostgreSQL) over the same window comes from /proc.

Every process runs on this one machine, so the figure shows whether the code spreads
its work over the shards (a design that serialised on one node would not gain), not
what three separate hosts would give.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import uuid
from typing import Any

from bench import procs
from bench.redis_server import LocalCluster

#: Queues of the scenario; with three shards, two live on each node (q0 and q4 on the
#: first, q1 and q5 on the second, q2 and q3 on the third).
QUEUES = ("q0", "q1", "q2", "q3", "q4", "q5")
#: Worker processes, each on QUEUES[i::PROCESSES].
PROCESSES = 3
CONCURRENCY = 16
SHARDS = (1, 3)
#: The measured window: from this share of N completed to 1 minus it.
EDGE = 0.05


@dataclasses.dataclass
class ClusterDrain:
    rate: float
    #: CPU seconds per process group over the window, Redis nodes as "redis node <i>".
    cpu_s: dict[str, float]
    window_s: float


def queues_of(worker: int) -> list[str]:
    return list(QUEUES[worker::PROCESSES])


def drain(dtq: Any, cluster: LocalCluster, n: int, work_dir: str) -> ClusterDrain:
    """One drain of ``n`` no-ops on ``dtq`` (a bench.dtq_system.DTQ on ``cluster``)."""
    dtq.reset()
    svc = dtq.svc
    bodies = [{"name": "dtq.noop", "queue": QUEUES[i % len(QUEUES)]} for i in range(n)]
    for i in range(0, n, 1000):
        svc.tasks.enqueue_many(bodies[i : i + 1000])
    env = dtq.worker_env()
    workers = procs.start(
        [_worker_command(dtq, queues_of(i), work_dir) for i in range(PROCESSES)],
        env,
        os.path.join(work_dir, "dtq-cluster-workers.log"),
    )
    roots = [p.pid for p in workers]

    def groups() -> dict[str, list[int]]:
        out = {f"redis node {i}": [pid] for i, pid in enumerate(cluster.pids)}
        out["worker"] = roots
        out["recorder"] = sorted(procs.descendants(roots))
        out["postgres"] = procs.pids_named("postgres")
        return out

    sampler = procs.CpuSampler(groups)
    low, high = int(n * EDGE), n - int(n * EDGE)
    start_ns = end_ns = 0
    deadline = time.monotonic() + 600
    try:
        while True:
            sampler.sample()
            done = sum(s.get("succeeded", 0) for s in svc.queue.stats(list(QUEUES)).values())
            now = time.time_ns()
            if not start_ns and done >= low:
                start_ns, start_done = now, done
            if done >= high:
                end_ns, end_done = now, done
                break
            if not procs.alive(workers):
                raise RuntimeError(f"cluster: a worker exited; see {work_dir}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster: drain of {n} timed out")
            time.sleep(0.005)
        sampler.sample()
    finally:
        procs.stop(workers)
    window_s = (end_ns - start_ns) / 1e9
    rate = (end_done - start_done) / window_s if window_s > 0 else float("nan")
    return ClusterDrain(rate, sampler.between(start_ns, end_ns), window_s)


def _worker_command(dtq: Any, queues: list[str], work_dir: str) -> list[str]:
    return [
        os.path.join(os.path.dirname(sys.executable), "dtq"),
        "worker",
        "--queues",
        ",".join(queues),
        "--concurrency",
        str(CONCURRENCY),
        "--grace-seconds",
        "2",
        "--offline-db",
        os.path.join(work_dir, f"journal-{uuid.uuid4().hex[:8]}.db"),
    ]
