"""Every Redis key DTQ uses, and the only code that formats one.

Per-queue keys carry the hash tag ``{queue}`` so that all of one queue's keys live in
one Redis Cluster slot and a single script can move a task atomically; different
queues still spread over the cluster's nodes.

Task hash fields (short names keep a queued task small; see docs/architecture.md, "Redis keys"):

===========  ===============================================================
``name``     task name
``pri``      priority 0-9 (9 runs first)
``payload``  JSON payload (dropped once the task succeeds)
``max``      max attempts
``tmo``      timeout seconds
``bo``       backoff as ``base_s,factor,max_s,jitter(0/1)``
``lk``       lock key (optional)
``st``       status
``att``      attempts started
``fence``    grows with every lease (epoch * 2^32 + count, see chalicelib/service/epoch.py)
``v``        version of the last event emitted for the task (epoch * 2^32 + count)
``run``      run_at (ms) of the current wait
``tok``      current lease token; ``ptok``: earlier tokens (late results)
``wid``      worker holding the lease; ``lx``: lease expiry (ms)
``sa``/``fa``  started / finished (ms); ``err``: last error; ``res``: result
``cr``       cancel requested (1)
``pf``       newest progress (ctx.progress): fraction; ``pm``: message; ``pat``: when (ms)
``pe``       when the task's last ``progress`` event was written (ms): one a second
``pu``       the newest progress is not written yet (1); written when the lease ends
===========  ===============================================================
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueKeys:
    """Keys of one queue; every one shares the ``{queue}`` hash tag."""

    ready: str  #: ZSET id → (9 - priority) * 2**48 + FIFO sequence
    scheduled: str  #: ZSET id → run_at ms
    retrying: str  #: ZSET id → next attempt ms
    running: str  #: ZSET id → lease expiry ms
    dead: str  #: ZSET id → died-at ms
    meta: str  #: HASH paused, concurrency, rate limit and its token bucket, registered, ep
    stats: str  #: HASH cluster-wide counters and histogram buckets
    seq: str  #: STRING FIFO sequence
    events: str  #: STREAM of transitions waiting to be recorded in Postgres
    signal: str  #: LIST pushed on enqueue; idle workers block on it
    task_prefix: str  #: + task id → HASH of the task
    lock_prefix: str  #: + lock key → STRING id of the task holding the lock
    lockwait_prefix: str  #: + lock key → ZSET tasks parked until the lock frees
    timeline_prefix: str  #: + unix minute → HASH that minute's counts and wait histogram

    def timeline(self, minute: int) -> str:
        """The timeline hash of one minute (``minute``: Unix time // 60)."""
        return self.timeline_prefix + str(minute)

    def task(self, task_id: str) -> str:
        return self.task_prefix + task_id


class Keys:
    """Key builder for one deployment (``DTQ_KEY_PREFIX``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._cache: dict[str, QueueKeys] = {}

    def queue(self, name: str) -> QueueKeys:
        qk = self._cache.get(name)
        if qk is None:
            base = f"{self.prefix}:{{{name}}}:"
            qk = QueueKeys(
                ready=base + "ready",
                scheduled=base + "scheduled",
                retrying=base + "retrying",
                running=base + "running",
                dead=base + "dead",
                meta=base + "meta",
                stats=base + "stats",
                seq=base + "seq",
                events=base + "events",
                signal=base + "signal",
                task_prefix=base + "t:",
                lock_prefix=base + "lock:",
                lockwait_prefix=base + "lockwait:",
                timeline_prefix=base + "tl:",
            )
            self._cache[name] = qk
        return qk

    @property
    def queues(self) -> str:
        """SET of every queue name ever enqueued to."""
        return f"{self.prefix}:queues"

    @property
    def epoch(self) -> str:
        """HASH ``ep``: the epoch, copied here for queues registered later and for the
        lock helper's fences (each queue's meta hash holds its own copy)."""
        return f"{self.prefix}:epoch"

    @property
    def workers(self) -> str:
        """ZSET worker id → last heartbeat ms."""
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        """HASH queues, mode, hostname, concurrency of one worker."""
        return f"{self.prefix}:worker:{worker_id}"

    def login_failures(self, username: str) -> str:
        """Token bucket of failed logins for one username."""
        return f"{self.prefix}:loginfail:{username}"

    def user_lock(self, name: str) -> str:
        """A handler's distributed lock (not tied to a queue)."""
        return f"{self.prefix}:userlock:{{{name}}}"

    @property
    def http_stats(self) -> str:
        """HASH cluster-wide HTTP request counts and latency buckets per route."""
        return f"{self.prefix}:http"

    def outcomes(self, queue: str, task_id: str) -> str:
        """HASH lease token → digest of the outcome accepted from it by ``/tasks/sync``
        (so that a re-sent identical outcome is recognised as already accepted)."""
        return f"{self.prefix}:{{{queue}}}:o:{task_id}"
