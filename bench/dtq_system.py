"""DTQ as a :class:`bench.drive.System`, plus the scenarios only DTQ has (in-process
claim loop, claim cost at depth, Redis memory per task, record lag)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import redis

from chalicelib.core.models import Durability, NewTask, Outcome
from chalicelib.core.settings import Settings
from chalicelib.core.taskspec import parse_task
from chalicelib.record import migrate
from chalicelib.service import deps
from chalicelib.service.recorder import GROUP, Recorder
from chalicelib.service.tasks import TaskService

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUEUE = "default"


class DTQ:
    """DTQ on the given Redis URL and Postgres database; a fresh key prefix per reset."""

    bulk_supported = True
    threads_supported = True

    def __init__(
        self,
        base: Settings,
        redis_url: str,
        database_url: str,
        work_dir: str,
        *,
        concurrency: int = 16,
        flush_redis: bool = False,
    ) -> None:
        self.name = "dtq"
        self.base = dataclasses.replace(base, redis_url=redis_url, database_url=database_url)
        self.work_dir = work_dir
        self.concurrency = concurrency
        #: The Redis database is ours alone (a private server): FLUSHDB between runs.
        self.flush_redis = flush_redis
        migrate.ensure_database(database_url)
        migrate.apply_migrations(database_url)
        self.svc: Any = None
        self._template: NewTask | None = None
        self.last_id = ""
        #: The bench queue's durability, set again after every reset.
        self.durability = Durability.RECORD
        self.reset()

    @property
    def settings(self) -> Settings:
        assert self.svc is not None
        return self.svc.settings  # type: ignore[no-any-return]

    @property
    def client(self) -> TaskService:
        return self.svc.tasks  # type: ignore[no-any-return]

    def reset(self) -> None:
        if self.svc is not None:
            self._forget()
            self.svc.close()
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        self.svc = deps.build(dataclasses.replace(self.base, key_prefix=prefix), pool_size=12)
        self._template = None
        if self.durability != Durability.RECORD:
            self.svc.queue.configure(QUEUE, durability=self.durability)

    @contextlib.contextmanager
    def durable_as(self, durability: Durability) -> Iterator[None]:
        """Run the block with the bench queue at ``durability`` (applied at each reset)."""
        before, self.durability = self.durability, durability
        try:
            yield
        finally:
            self.durability = before

    def hold(self) -> None:
        """Pause the bench queue (a drain enqueues into it, then starts the workers)."""
        self.svc.queue.configure(QUEUE, paused="1")

    def release(self, workers: list[Any], timeout_s: float = 60.0) -> None:
        """Resume the queue once every worker process's recorder reads the queue's event
        stream: a worker starts its recorder child after its first claim, and a drain
        timed from the first task would count that start-up."""
        r = self.svc.redis
        stream = self.svc.keys.queue(QUEUE).events
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                consumers = len(r.xinfo_consumers(stream, GROUP))
            except redis.ResponseError:  # no stream or group yet
                consumers = 0
            if consumers >= len(workers):
                break
            if time.monotonic() > deadline or not all(w.poll() is None for w in workers):
                raise RuntimeError(f"dtq: {consumers} of {len(workers)} recorders started")
            time.sleep(0.01)
        self.svc.queue.configure(QUEUE, paused="0")

    def _forget(self) -> None:
        r = self.svc.redis
        if self.flush_redis:
            r.flushdb(asynchronous=True)  # 10^6 tasks take seconds to free synchronously
            return
        for key in r.scan_iter(match=f"{self.settings.key_prefix}:*", count=5000):
            r.unlink(key)

    # -- System --------------------------------------------------------------------------

    def enqueue_noops(self, n: int) -> None:
        enqueue = self.client.enqueue
        for _ in range(n):
            enqueue("dtq.noop")

    def enqueue_noops_bulk(self, n: int) -> None:
        self.client.enqueue_many([{"name": "dtq.noop"}] * n)

    def enqueue_stamp(self, t0_ns: int, *, last: bool = False) -> None:
        self.last_id = self.client.enqueue("bench.stamp", {"t0": t0_ns})["id"]

    def worker_commands(self, processes: int) -> list[list[str]]:
        dtq = os.path.join(os.path.dirname(sys.executable), "dtq")
        return [
            [
                dtq,
                "worker",
                "--queues",
                QUEUE,
                "--concurrency",
                str(self.concurrency),
                "--tasks",
                "bench.handlers",
                "--grace-seconds",
                "2",
                "--offline-db",
                os.path.join(self.work_dir, f"journal-{uuid.uuid4().hex[:8]}.db"),
            ]
            for _ in range(processes)
        ]

    def worker_env(self) -> dict[str, str]:
        s = self.settings
        return {
            "DTQ_REDIS_URL": s.redis_url,
            "DTQ_DATABASE_URL": s.database_url,
            "DTQ_KEY_PREFIX": s.key_prefix,
            "DTQ_REDIS_CLUSTER": "true" if s.redis_cluster else "false",
            "PYTHONPATH": REPO,
        }

    def close(self) -> None:
        if self.svc is not None:
            self._forget()
            self.svc.close()
            self.svc = None

    # -- observers -----------------------------------------------------------------------

    def backlog(self) -> int:
        """Events not yet recorded in Postgres (XLEN of the queue's events stream)."""
        return int(self.svc.redis.xlen(self.svc.keys.queue(QUEUE).events))

    def succeeded(self) -> float:
        """Tasks of the bench queue that succeeded so far (the scripts' counter)."""
        raw = self.svc.redis.hget(self.svc.keys.queue(QUEUE).stats, "succeeded")
        return float(raw or 0)

    def wait_recorded(self, task_id: str, timeout_s: float = 60.0) -> float:
        """Seconds until Postgres shows ``task_id`` succeeded (polled every 10 ms)."""
        start = time.time_ns()
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT status FROM dtq_tasks WHERE id = %s", (task_id,)
                ).fetchone()
                if row is not None and row[0] == "succeeded":
                    return (time.time_ns() - start) / 1e9
                if (time.time_ns() - start) / 1e9 > timeout_s:
                    return float("nan")
                time.sleep(0.01)

    def redis_used_memory(self) -> int:
        return int(self.svc.redis.info("memory")["used_memory"])

    # -- in-process scenarios (the lead's bench/core.py, folded in) ----------------------

    def claim_loop(self, n: int, *, record: bool) -> float:
        """Tasks/s of one in-process claim(100) → report_many loop over ``n`` pre-enqueued
        tasks; with ``record`` the recorder writes every transition to Postgres too."""
        self.reset()
        for i in range(0, n, 1000):
            self.enqueue_noops_bulk(min(1000, n - i))
        q = self.svc.queue
        recorder = Recorder(q, self.svc.store, "bench")
        recorder.drain()
        done = 0
        start = time.perf_counter()
        while leases := q.claim([QUEUE], "bench", 100, 30_000).leases:
            q.report_many([Outcome(QUEUE, le.task_id, le.lease_token, True) for le in leases])
            done += len(leases)
            if record:
                recorder.drain_once()
        if record:
            recorder.drain()
        return done / (time.perf_counter() - start)

    def fill_redis_only(self, n: int) -> None:
        """Queue ``n`` no-ops in Redis only (no Postgres rows): claim cost and memory are
        properties of the Redis side, and 10^6 rows would only slow the set-up."""
        if self._template is None:
            spec = parse_task({"name": "dtq.noop"}, max_payload_bytes=1024)
            self._template = TaskService._new_task(spec, self.svc.queue.clock.now_ms(), None)
        template = self._template
        for i in range(0, n, 5000):
            batch = [template._replace(id=str(uuid.uuid4())) for _ in range(min(5000, n - i))]
            self.svc.queue.enqueue_many(batch)

    def claim_costs_us(
        self, depth: int, claims: int, batches: tuple[int, ...], runs: int
    ) -> dict[int, list[float]]:
        """Per claim batch size, one median µs of ``claims`` claims per run, with the
        queue held at ``depth`` ready tasks (each claim's tasks are replaced, untimed)."""
        self.reset()
        self.fill_redis_only(depth)
        q = self.svc.queue
        out: dict[int, list[float]] = {b: [] for b in batches}
        for _ in range(runs):
            for batch in batches:
                times = []
                for _ in range(claims):
                    t = time.perf_counter_ns()
                    got = q.claim([QUEUE], "bench", batch, 30_000).leases
                    times.append((time.perf_counter_ns() - t) / 1000)
                    self.fill_redis_only(len(got))
                out[batch].append(statistics.median(times))
        return out

    def memory_per_task(self, n: int) -> tuple[float, int, int]:
        """(bytes of Redis memory per queued task, MEMORY USAGE of one task hash, payload
        bytes) after queueing ``n`` no-ops into an empty queue."""
        self.reset()
        deadline = time.monotonic() + 120
        # An asynchronous FLUSHDB frees in the background: wait, or "before" is too high.
        while int(self.svc.redis.info("memory").get("lazyfree_pending_objects", 0)) > 0:
            if time.monotonic() > deadline:
                raise RuntimeError("Redis is still freeing a flushed database")
            time.sleep(0.05)
        before = self.redis_used_memory()
        self.fill_redis_only(n)
        after = self.redis_used_memory()
        qk = self.svc.keys.queue(QUEUE)
        first = self.svc.redis.zrange(qk.ready, 0, 0)[0].decode()
        hash_bytes = int(self.svc.redis.memory_usage(qk.task(first), samples=0))
        return (after - before) / n, hash_bytes, 2


def dtq_bin() -> str:
    return shutil.which("dtq", path=os.path.dirname(sys.executable)) or "dtq"
