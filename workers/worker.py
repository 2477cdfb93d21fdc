"""The worker: claims tasks, runs them on a fixed pool of slots, reports their outcomes.

Threads (none per task):

- the **run loop** (the caller's thread) claims in batches sized to free slots, hands
  jobs to the slots and acknowledges outcomes in batches (≤ ``ack_batch`` or
  ``ack_delay_s``): journal first, then one ``sync`` round trip;
- ``slots`` (workers/slots.py) run handlers;
- the **monitor** extends every due lease in one batch each tick, enforces
  ``timeout_seconds``, heartbeats the registration, and flushes outcomes if the loop is
  busy;
- the **waker** blocks on the queues' wake-up signal while the loop is short of work, so
  an idle worker starts a new task within milliseconds of its enqueue.

Offline: a transport call raising ``Unavailable`` sends the worker offline. It keeps
running what it holds, journals outcomes, claims nothing, and retries with jittered
exponential backoff; reconnecting syncs the whole journal before claiming again.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import Any, Literal

from chalicelib.core.clock import now_ms
from chalicelib.core.errors import DTQError, LeaseLost, Unavailable
from chalicelib.core.models import Lease, Outcome
from chalicelib.core.taskspec import parse_task
from workers.context import Job
from workers.offline import Journal
from workers.registry import Registry
from workers.slots import PoolFactory, SlotPool, timed_out
from workers.transport import Synced, Transport

log = logging.getLogger("dtq.worker")

#: Longest wait between reconnection attempts while offline.
MAX_BACKOFF_S = 10.0
#: With ``prefetch`` unset, a worker holds beyond its free slots about as many tasks as
#: its slots finish in this long at the recent run time of its tasks, between
#: ``concurrency`` and ``max(4 * concurrency, 16)``. A claim's round trip costs more than
#: a short task, so short tasks should come many per claim (a burst drain of no-ops:
#: 6,900 against 2,700/s at concurrency 1, 15,800 against 13,700/s at 16), while a task
#: of higher priority enqueued meanwhile waits behind at most about this much
#: prefetched work.
PREFETCH_WAIT_S = 0.005


@dataclass(frozen=True)
class WorkerConfig:
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 1
    #: tasks claimed beyond free slots (work to do while offline, fewer claim round trips);
    #: None: chosen from the tasks' run times (``PREFETCH_WAIT_S``)
    prefetch: int | None = None
    lease_ms: int = 30_000
    grace_s: float = 30.0
    #: acknowledge after this many outcomes ...
    ack_batch: int = 64
    #: ... or once the oldest unacknowledged outcome is this old
    ack_delay_s: float = 0.002
    worker_id: str = ""
    hostname: str = ""
    max_payload_bytes: int = 262_144

    def capacity(self, run_s: float) -> int:
        """Tasks held at most (running or waiting for a slot) when tasks have recently
        taken ``run_s`` seconds each."""
        c = self.concurrency
        if self.prefetch is not None:
            return c + max(0, self.prefetch)
        extra = int(PREFETCH_WAIT_S * c / max(run_s, 1e-6))
        return c + min(max(extra, c), max(4 * c, 16))


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        transport: Transport,
        registry: Registry,
        journal: Journal,
        *,
        locks: Any = None,
        pool: PoolFactory = SlotPool,
    ) -> None:
        self.config = config
        self.worker_id = config.worker_id or f"w-{uuid.uuid4().hex[:12]}"
        self.transport = transport
        self.registry = registry
        self.journal = journal
        self._locks = locks  # (LockScripts, Keys) in Redis mode
        self._extend_every_s = config.lease_ms / 3000
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._held: dict[str, Job] = {}
        #: A new lease of a task whose earlier copy still runs here (its lease was lost,
        #: e.g. with Redis's last writes, and the task came back to this worker): held and
        #: extended, but started only once that copy ends, or answered with its outcome.
        self._behind: dict[str, Job] = {}
        self._unstarted = 0
        #: Moving mean of run times (seconds); it starts where ``capacity`` gives the
        #: least prefetch.
        self._run_s = PREFETCH_WAIT_S
        self._pending: list[Outcome] = []
        self._pending_since = 0.0
        self._events: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._want_work = threading.Event()
        # A claim that came back short leaves the worker "dry": it claims again when the
        # waker hears of new work (or on reconnection), not on each finished task. Each
        # such event takes a fresh number; dry means none came since the short claim began.
        self._wakes = count()
        self._woken = next(self._wakes)
        self._dry_since = -1
        #: claim round trips made (a figure for tests and post-mortems)
        self.claims = 0
        self._ack_wanted = threading.Event()
        self._online = True
        self._registered = False
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self._claim_after = 0.0
        self._created_dirty = journal.count_created() > 0
        self._then: Callable[[], object] | None = None
        self.counts = {
            "succeeded": 0,
            "failed": 0,
            "rejected": 0,
            "released": 0,
            "timed_out": 0,
            "canceled": 0,
            "dropped": 0,
        }
        self._pool = pool(config.concurrency, self._execute)
        self._threads = [
            threading.Thread(target=self._monitor, name="dtq-monitor", daemon=True),
            threading.Thread(target=self._waker, name="dtq-waker", daemon=True),
            threading.Thread(target=self._acker, name="dtq-acker", daemon=True),
        ]

    # -- lifecycle -----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming and shut down gracefully (safe from a signal handler)."""
        self._stop.set()
        self._events.put(0)

    @property
    def online(self) -> bool:
        return self._online

    def run(self, *, burst: bool = False, then: Callable[[], object] | None = None) -> None:
        """Work until :meth:`stop` (or, with ``burst``, until nothing is left to claim).

        ``then`` runs in a thread of its own right after the first claim (or once the
        worker finds itself offline before it): the start-up work a first claim does not
        need, so that a new worker starts the task waiting for it sooner."""
        self._then = then
        for t in self._threads:
            t.start()
        self._reconnect()  # registers and syncs what a previous run journaled
        try:
            self._loop(burst)
        finally:
            self._shutdown()

    def _started(self) -> None:
        then, self._then = self._then, None
        if then is None:
            return

        def step() -> None:
            try:
                then()
            except Exception:
                log.exception("start-up after the first claim failed")

        thread = threading.Thread(target=step, name="dtq-startup", daemon=True)
        thread.start()
        self._threads.append(thread)  # joined at shutdown, as the others are

    def _loop(self, burst: bool) -> None:
        cfg = self.config
        settled = False
        while not self._stop.is_set():
            now = time.monotonic()
            if not self._online:
                self._started()
                if now >= self._retry_at:
                    self._reconnect()
                if not self._online:
                    self._wait(min(max(self._retry_at - now, 0.01), 0.5))
                    continue
            capacity = cfg.capacity(self._run_s)
            min_claim = max(1, capacity // 2)
            free = capacity - len(self._held)
            claimed = want = 0
            dry = self._dry_since == self._woken and not burst
            if (
                free > 0
                and now >= self._claim_after
                and not dry
                and (free >= min_claim or self._unstarted == 0)
            ):
                want = free
                claimed = self._claim(free, now)
            self._started()
            if claimed:
                settled = False
                continue
            if burst and want and not self._held:
                # Done only when a claim made after everything was reported finds nothing
                # (a reported failure may have made a retry due at once).
                if settled and not self._pending and self._online:
                    return
                self.flush()
                settled = True
                continue
            settled = False
            self._wait(0.5)

    def _wait(self, timeout: float) -> None:
        try:
            self._events.get(timeout=timeout)
            while True:  # one wake-up serves every event queued meanwhile
                self._events.get_nowait()
        except queue.Empty:
            pass

    # -- claim and run -------------------------------------------------------------------

    def _claim(self, free: int, now: float) -> int:
        cfg = self.config
        woken = self._woken
        self.claims += 1
        try:
            leases, retry_after_ms = self.transport.claim(
                self.worker_id, cfg.queues, free, cfg.lease_ms
            )
        except Unavailable as exc:
            self._went_offline(exc)
            return 0
        if retry_after_ms:
            self._claim_after = now + retry_after_ms / 1000
        if len(leases) < free:
            self._want_work.set()  # the queues ran dry: block on their signal
            if not retry_after_ms:  # (a rate limit says when to claim again)
                self._dry_since = woken
        for lease in leases:
            if self.journal.owes(lease.task_id):
                # The server may have accepted that outcome a moment ago (a retry due at
                # once) while the report is still settling: let it finish, then look again.
                with self._flush_lock:
                    owed = self.journal.owes(lease.task_id)
                if owed and self._resettle(lease):
                    continue
            job = Job(lease, extend_at=now + self._extend_every_s)
            with self._lock:
                self._unstarted += 1
                if lease.task_id in self._held:  # never two copies of one task at once
                    self._behind[lease.task_id] = job
                    continue
                self._held[lease.task_id] = job
            self._pool.submit(job)
        return len(leases)

    def _resettle(self, lease: Lease) -> bool:
        """A task came back while an outcome of an earlier lease of it is journaled here
        (its report failed, or its reply was lost in transit): report that outcome as it
        was written, under its own lease token and worker, and let the server decide.
        True when that outcome ended the task (a late success), so the new lease must not
        run; else the new lease is a new attempt and runs. The old outcome is never sent
        under the new lease: a failure would then answer the very retry it caused, an
        attempt recorded that never ran."""
        with self._flush_lock:
            owed = self.journal.outcome(lease.task_id)
            if owed is None:  # settled meanwhile
                return False
            res = self._sync([owed])
        if res is None or lease.task_id not in res.accepted:
            return False  # refused (or unknown while offline): the new lease is the attempt
        try:
            # "Accepted" may also mean "had it already" (HTTP: a resent outcome); only the
            # server knows whether the new lease is still live.
            [ans] = self.transport.extend([(lease, self.config.lease_ms)])
        except Unavailable as exc:
            self._went_offline(exc)
            return False
        if ans.lost is None:
            return False
        log.info(
            "task %s: its journaled outcome ended it; not running its new lease", lease.task_id
        )
        return True

    def _execute(self, job: Job) -> None:
        if time.monotonic() > job.extend_at + self._extend_every_s and not self._still_ours(job):
            return
        with self._lock:
            if job.done:  # released or canceled before it started
                return
            job.started_ms = now_ms()
            job.deadline = time.monotonic() + job.lease.timeout_seconds
            self._unstarted -= 1
        t0 = time.perf_counter()
        report = self._pool.run_job(self.registry, self, job)
        # Slots update the mean without a lock: a lost update only loses one sample.
        self._run_s += (time.perf_counter() - t0 - self._run_s) * 0.1
        self._finish(job, report)

    def _still_ours(self, job: Job) -> bool:
        """A held task about to start that went two thirds of its lease unextended (the
        process was paused, or its monitor fell behind) may belong to another worker by
        now: ask before running it under a fence a newer holder has replaced."""
        try:
            [ans] = self.transport.extend([(job.lease, self.config.lease_ms)])
        except Unavailable as exc:
            self._went_offline(exc)
            return True  # offline: it runs, as everything held does (its outcome decides)
        if ans.lost or ans.canceled:
            log.info(
                "lease of task %s %s before it started; not running it",
                job.lease.task_id,
                "lost" if ans.lost else "canceled",
            )
            job.lost = bool(ans.lost)
            self._finish(job, None, unreported="dropped" if ans.lost else "canceled")
            return False
        job.extend_at = time.monotonic() + self._extend_every_s
        return True

    def _finish(
        self,
        job: Job,
        report: Outcome | None,
        *,
        timeout: bool = False,
        unreported: Literal["canceled", "dropped"] = "canceled",
    ) -> bool:
        task_id, start = job.lease.task_id, None
        with self._lock:
            if job.done:
                return False
            job.done = True
            if self._behind.get(task_id) is job:
                del self._behind[task_id]
            elif self._held.get(task_id) is job:
                del self._held[task_id]
                start = self._behind.pop(task_id, None)
            if not job.started_ms:
                self._unstarted -= 1
            if timeout:
                self._pool.abandon(job)
            if start is not None and report is not None:
                # The task ran to an outcome here under its lost lease: that outcome
                # answers the new lease too, rather than a second run.
                report = report._replace(token=start.lease.lease_token)
                start.done = True
                self._unstarted -= 1
                start = None
            elif start is not None:
                self._held[task_id] = start
            if report is None:  # nothing to report: counted as ``unreported`` says why
                self.counts[unreported] += 1
            else:
                self._add_pending(report)
        if start is not None:
            self._pool.submit(start)
        self._events.put(1)
        return True

    def _add_pending(self, report: Outcome) -> None:
        """Queue an outcome for the acker (caller holds ``self._lock``)."""
        if not self._pending:
            self._pending_since = time.monotonic()
            self._ack_wanted.set()
        self._pending.append(report)
        if len(self._pending) == self.config.ack_batch:
            self._ack_wanted.set()

    # -- acknowledgements --------------------------------------------------------------

    def _acker(self) -> None:
        """Acknowledges in its own thread, so that reporting one batch overlaps with
        claiming and running the next (Redis and Python then work at the same time)."""
        delay = self.config.ack_delay_s
        while not self._closing.is_set():
            if not self._ack_wanted.wait(0.5):
                continue
            self._ack_wanted.clear()
            age = time.monotonic() - self._pending_since
            if len(self._pending) < self.config.ack_batch and age < delay and self._held:
                self._closing.wait(delay - age)  # gather a few more into this round trip
            try:
                self.flush()
            except Exception:
                log.exception("acknowledging outcomes failed")
                self._closing.wait(0.5)
            if self._pending:
                self._ack_wanted.set()

    def flush(self) -> None:
        """Journal every finished outcome, then report them (if online)."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            self.journal.add(batch, self.worker_id)
            if self._online and (batch or self._created_dirty):
                self._sync(batch)

    def _sync(self, reports: list[Outcome]) -> Synced | None:
        """Report outcomes (each under its own lease token and worker) and push created
        tasks; None when the server is unreachable (the worker is then offline)."""
        created = self.journal.pending_created() if self._created_dirty else []
        try:
            res = self.transport.sync(self.worker_id, reports, created)
        except Unavailable as exc:
            self._went_offline(exc)
            return None
        self.journal.settle(res.accepted + [task_id for task_id, _ in res.rejected])
        if created:
            self.journal.settle_created(res.created)
            self._created_dirty = self.journal.count_created() > 0
        ok = {r.task_id: r.succeeded for r in reports}
        for task_id in res.accepted:
            self.counts["succeeded" if ok.get(task_id, True) else "failed"] += 1
        self.counts["rejected"] += len(res.rejected)
        for task_id, reason in res.rejected:
            log.info("outcome of task %s refused: %s", task_id, reason)
        return res

    # -- offline and reconnection ------------------------------------------------------

    def _went_offline(self, exc: Exception) -> None:
        with self._lock:
            if self._online:
                log.warning("offline (journaling outcomes, not claiming): %s", exc)
            self._online = False
            self._backoff_s = min(MAX_BACKOFF_S, max(0.1, self._backoff_s * 2))
            # Full jitter: a fleet that lost the server together must not return together.
            self._retry_at = time.monotonic() + self._backoff_s * random.uniform(0.5, 1.5)
        self._events.put(0)

    def _reconnect(self) -> None:
        cfg = self.config
        try:
            self.transport.register(
                self.worker_id,
                cfg.queues,
                cfg.hostname,
                cfg.concurrency,
                first=not self._registered,
            )
            self._registered = True
            was_offline, self._online = not self._online, True
            with self._flush_lock:
                while True:
                    batch = self.journal.pending(500)
                    self._created_dirty = self._created_dirty or self.journal.count_created() > 0
                    if not batch and not self._created_dirty:
                        break
                    if self._sync(batch) is None:
                        return  # offline again; _sync scheduled the next attempt
                    if len(batch) < 500:
                        break
        except Unavailable as exc:
            self._went_offline(exc)
            return
        if was_offline and self._backoff_s:
            log.warning("back online; journal synced")
        self._backoff_s = 0.0
        self._woken = next(self._wakes)
        self._events.put(0)

    # -- background threads --------------------------------------------------------------

    def _monitor(self) -> None:
        tick = min(0.1, self._extend_every_s / 4)
        next_beat = time.monotonic() + 10.0
        while not self._closing.wait(tick):
            now = time.monotonic()
            try:
                self._check_timeouts(now)
                if self._online:
                    self._extend_due(now)
                if self._online and now >= next_beat:
                    cfg = self.config
                    interval = self.transport.register(
                        self.worker_id, cfg.queues, cfg.hostname, cfg.concurrency, first=False
                    )
                    next_beat = now + interval
            except Unavailable as exc:
                self._went_offline(exc)
            except Exception:
                log.exception("monitor tick failed")

    def _check_timeouts(self, now: float) -> None:
        with self._lock:
            late = [j for j in self._held.values() if j.started_ms and now > j.deadline]
        for job in late:
            if self._finish(job, timed_out(job), timeout=True):
                self.counts["timed_out"] += 1
                job.request_stop()

    def _extend_due(self, now: float) -> None:
        with self._lock:
            held = [*self._held.values(), *self._behind.values()]
            due = [j for j in held if not j.lost and now >= j.extend_at]
        if not due:
            return
        answers = self.transport.extend([(j.lease, self.config.lease_ms) for j in due])
        for job, ans in zip(due, answers, strict=True):
            job.extend_at = now + self._extend_every_s
            if ans.canceled:
                job.canceled = True
                job.request_stop()
                if not job.started_ms:
                    self._finish(job, None)
            elif ans.lost:
                # Keep running: a late outcome is still accepted if nobody finished first.
                job.lost = True
                if not job.started_ms:
                    # Not started yet: another worker has it by now, so do not run it too.
                    log.info(
                        "lease of task %s lost before it started; not running it", job.lease.task_id
                    )
                    self._finish(job, None, unreported="dropped")

    def _waker(self) -> None:
        while not self._closing.is_set():
            if not self._want_work.wait(0.5) or not self._online:
                if not self._online:
                    self._closing.wait(0.05)
                continue
            try:
                self.transport.wait_for_work(self.config.queues, 1.0)
            except Unavailable as exc:
                self._went_offline(exc)
                continue
            except Exception:
                log.exception("waiting for work failed")
                self._closing.wait(0.5)
            self._want_work.clear()
            self._woken = next(self._wakes)
            self._events.put(2)

    # -- shutdown ------------------------------------------------------------------------

    def _take(self, started: bool) -> list[Job]:
        with self._lock:
            jobs = [j for j in self._held.values() if bool(j.started_ms) == started]
            for j in jobs:
                j.done = True
                del self._held[j.lease.task_id]
                if not started:
                    self._unstarted -= 1
            if not started:
                behind = list(self._behind.values())
                self._behind.clear()
                for j in behind:
                    j.done = True
                    self._unstarted -= 1
                jobs += behind
        return jobs

    def _release(self, jobs: list[Job]) -> None:
        if not jobs or not self._online:
            return  # offline: the leases expire and the tasks are retried
        try:
            self.transport.release([j.lease for j in jobs])
            self.counts["released"] += len(jobs)
        except Unavailable as exc:
            self._went_offline(exc)

    def _shutdown(self) -> None:
        self._release(self._take(started=False))
        deadline = time.monotonic() + self.config.grace_s
        while self._held and time.monotonic() < deadline:
            self._wait(min(0.05, max(0.0, deadline - time.monotonic())))
        rest = self._take(started=True)
        for job in rest:
            job.request_stop()
        self._release(rest)
        self.flush()
        if not self._online:
            self._reconnect()  # one last chance to sync; the journal keeps the rest
        try:
            if self._online:
                self.transport.deregister(self.worker_id)
        except Unavailable:
            pass
        self._closing.set()
        self._want_work.set()
        self._pool.close()
        for t in self._threads:
            t.join(2.0)

    # -- services for handlers (workers.context.Host) ------------------------------------

    def extend_job(self, job: Job, seconds: float) -> int:
        ms = max(1, int(seconds * 1000))
        [ans] = self.transport.extend([(job.lease, ms)])
        if ans.canceled:
            job.canceled = True
            job.request_stop()
        if ans.lost:
            job.lost = True
            raise LeaseLost(f"the lease of task {job.lease.task_id} is lost ({ans.lost})")
        job.extend_at = time.monotonic() + seconds / 3
        return ans.expires_ms

    def report_progress(self, job: Job, fraction: float, message: str) -> None:
        """``ctx.progress``, best effort: dropped while offline or once the attempt's
        outcome is decided or its lease lost; an unreachable server sends the worker
        offline (as any transport call does) and the report is dropped, never raised."""
        if job.done or job.lost or job.canceled or not self._online:
            return
        try:
            refused = self.transport.progress(job.lease, fraction, message)
        except Unavailable as exc:
            self._went_offline(exc)
            return
        except Exception:
            log.warning("progress of task %s not reported", job.lease.task_id, exc_info=True)
            return
        if refused is not None:
            log.debug("progress of task %s refused: %s", job.lease.task_id, refused)

    def make_lock(self, job: Job, name: str, ttl_seconds: float) -> Any:
        if self._locks is None:
            raise DTQError("the lock helper needs Redis mode (this worker uses --api)")
        from chalicelib.queue.locks import DistributedLock

        scripts, keys = self._locks
        owner = f"{self.worker_id}:{job.lease.task_id}:{job.lease.fence}:{uuid.uuid4().hex[:8]}"
        return DistributedLock(scripts, keys, name, ttl_s=ttl_seconds, owner=owner)

    def enqueue_from(
        self, job: Job, name: str, payload: dict[str, Any], options: dict[str, Any]
    ) -> str:
        job.created_count += 1
        key = options.pop("idempotency_key", None) or f"{job.lease.task_id}:{job.created_count}"
        body = {"name": name, "payload": payload, "idempotency_key": key, **options}
        parse_task(body, max_payload_bytes=self.config.max_payload_bytes)  # fail in the handler
        self.journal.add_created(key, body)
        self._created_dirty = True
        return str(key)
