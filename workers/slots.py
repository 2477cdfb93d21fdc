"""Running handlers: a fixed pool of slot threads, and turning a handler's return or
exception into a :class:`~chalicelib.core.models.Outcome`.

Timeouts: a Python thread cannot be killed. When an attempt passes its
``timeout_seconds`` the worker reports it failed at once and sets the task's cancel
flag (cooperative handlers such as ``dtq.sleep`` end); the thread itself keeps running
the handler. So that a hung handler does not silently shrink the worker, the pool starts
a replacement thread (up to ``concurrency`` such zombies); the zombie exits as soon as
its handler returns, and its result is dropped.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from chalicelib.core.clock import now_ms
from chalicelib.core.errors import Cancelled, Retry
from chalicelib.core.models import Outcome
from workers.context import Host, Job, TaskContext
from workers.registry import Registry

log = logging.getLogger("dtq.worker")

#: Errors are recorded with their traceback, cut to this many characters.
MAX_ERROR_CHARS = 16_000


def run_job(registry: Registry, host: Host, job: Job) -> Outcome | None:
    """Run one attempt; None when the task was canceled (nothing to report)."""
    lease = job.lease
    handler = registry.get(lease.name)
    try:
        if handler is None:
            raise LookupError(f"no handler registered for task {lease.name!r}")
        result = handler(lease.payload, TaskContext(host, job))
        result_json = "null" if result is None else json.dumps(result, separators=(",", ":"))
        return Outcome(
            lease.queue,
            lease.task_id,
            lease.lease_token,
            True,
            result_json,
            started_ms=job.started_ms,
            finished_ms=now_ms(),
        )
    except Retry as exc:
        delay = None if exc.delay_seconds is None else int(exc.delay_seconds * 1000)
        return _failed(job, f"Retry: {exc}", delay)
    except Cancelled as exc:
        if job.canceled:
            return None
        return _failed(job, f"Cancelled: {exc}" + ("" if str(exc) else "canceled by the handler"))
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        return _failed(job, text[:MAX_ERROR_CHARS])


def _failed(job: Job, error: str, retry_delay_ms: int | None = None) -> Outcome:
    lease = job.lease
    return Outcome(
        lease.queue,
        lease.task_id,
        lease.lease_token,
        False,
        "null",
        error,
        retry_delay_ms,
        started_ms=job.started_ms,
        finished_ms=now_ms(),
    )


def timed_out(job: Job) -> Outcome:
    return _failed(job, f"TimeoutError: the attempt exceeded {job.lease.timeout_seconds} s")


class Pool(Protocol):
    """What the worker needs of its slots: :class:`SlotPool` (threads, the default) or
    ``workers.procpool.ProcessPool`` (``--pool process``)."""

    def submit(self, job: Job) -> None: ...

    def abandon(self, job: Job) -> None: ...

    def close(self, join_s: float = 0.0) -> None: ...

    def run_job(self, registry: Registry, host: Host, job: Job) -> Outcome | None: ...


#: Builds a pool from ``(concurrency, run)``; ``run(job)`` is called on a slot's thread.
PoolFactory = Callable[[int, Callable[[Job], None]], Pool]


class SlotPool:
    """``size`` threads taking jobs from one queue (no thread per task)."""

    def __init__(self, size: int, run: Callable[[Job], None]) -> None:
        self.size = size
        self._run = run
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._alive = 0
        self._zombies = 0
        self._threads: list[threading.Thread] = []
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> None:
        with self._lock:
            self._alive += 1
        t = threading.Thread(target=self._loop, name=f"dtq-slot-{len(self._threads)}", daemon=True)
        self._threads.append(t)
        t.start()

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._run(job)
            except BaseException:  # a bug in the worker itself: keep the slot alive
                log.exception("slot crashed running task %s", job.lease.task_id)
            if job.abandoned:  # replaced while its handler hung: the pool is full again
                with self._lock:
                    self._zombies -= 1
                    self._alive -= 1
                return

    def abandon(self, job: Job) -> None:
        """``job`` timed out while its thread still runs it: replace that thread. Called
        under the worker's lock, before the thread can look at ``job.abandoned``."""
        with self._lock:
            if self._zombies >= self.size:
                return  # bounded: a pathological handler must not grow threads forever
            self._zombies += 1
        job.abandoned = True
        self._spawn()

    def close(self, join_s: float = 0.0) -> None:
        for _ in range(len(self._threads)):
            self._jobs.put(None)
        for t in self._threads:
            t.join(join_s)

    def stats(self) -> dict[str, Any]:
        return {"alive": self._alive, "zombies": self._zombies}

    def run_job(self, registry: Registry, host: Host, job: Job) -> Outcome | None:
        return run_job(registry, host, job)
