"""What a handler sees of its task (:class:`TaskContext`) and what the worker keeps about
each held task (:class:`Job`)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from chalicelib.core.errors import Cancelled
from chalicelib.core.models import Lease, progress_problem

log = logging.getLogger("dtq.task")


class Host(Protocol):
    """The worker services a context delegates to."""

    def extend_job(self, job: Job, seconds: float) -> int: ...

    def make_lock(self, job: Job, name: str, ttl_seconds: float) -> Any: ...

    def enqueue_from(
        self, job: Job, name: str, payload: dict[str, Any], options: dict[str, Any]
    ) -> str: ...

    def report_progress(self, job: Job, fraction: float, message: str) -> None: ...


@dataclass(eq=False, slots=True)
class Job:
    """A task this worker holds a lease on, from claim to outcome."""

    lease: Lease
    #: monotonic time of the next lease extension
    extend_at: float
    started_ms: int = 0
    #: monotonic deadline of the attempt (timeout_seconds after it started)
    deadline: float = float("inf")
    #: the outcome is decided (reported, timed out, canceled, released): later ones are dropped
    done: bool = False
    #: the server said the task was canceled: its outcome is not reported
    canceled: bool = False
    #: the lease is no longer ours (stop extending; the outcome is still reported)
    lost: bool = False
    #: cancel requested or timed out: a cooperative handler should end
    canceled_or_timed_out: bool = False
    #: created lazily: most tasks never wait on anything
    _wake: threading.Event | None = None
    #: timed out while its slot thread still runs it; the thread exits when it returns
    abandoned: bool = False
    #: follow-up tasks created by this attempt (their default idempotency keys)
    created_count: int = 0

    def request_stop(self) -> None:
        """Cancel or timeout: tell a cooperative handler to end."""
        self.canceled_or_timed_out = True
        if self._wake is not None:
            self._wake.set()

    def wait(self, seconds: float) -> bool:
        if self._wake is None:
            self._wake = threading.Event()
            if self.canceled_or_timed_out:
                self._wake.set()
        return self._wake.wait(seconds)


class Context(Protocol):
    """What every handler gets as ``ctx``, in a thread slot (:class:`TaskContext`) or a
    process slot (``workers.procpool.ProcessContext``): ``dtq.Context``."""

    log: logging.LoggerAdapter[logging.Logger]

    @property
    def task_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def fence(self) -> int: ...
    @property
    def cancelled(self) -> bool: ...
    def raise_if_cancelled(self) -> None: ...
    def wait(self, seconds: float) -> bool: ...
    def extend_lease(self, seconds: float) -> int: ...
    def lock(self, name: str, ttl_seconds: float = 30.0) -> Any: ...
    def enqueue(self, name: str, payload: dict[str, Any] | None = None, **options: Any) -> str: ...
    def progress(self, fraction: float, message: str = "") -> None: ...


class TaskContext:
    """Handed to every handler: who the task is, and ways to talk to the queue."""

    __slots__ = ("_host", "_job", "log")

    def __init__(self, host: Host, job: Job) -> None:
        self._host = host
        self._job = job
        self.log = logging.LoggerAdapter(log, {"task_id": job.lease.task_id})

    @property
    def task_id(self) -> str:
        return self._job.lease.task_id

    @property
    def name(self) -> str:
        return self._job.lease.name

    @property
    def queue(self) -> str:
        return self._job.lease.queue

    @property
    def attempt(self) -> int:
        """1 for the first attempt."""
        return self._job.lease.attempt

    @property
    def max_attempts(self) -> int:
        return self._job.lease.max_attempts

    @property
    def fence(self) -> int:
        """Grows with every lease of this task: hand it to resources that must refuse
        writes from an older attempt."""
        return self._job.lease.fence

    @property
    def cancelled(self) -> bool:
        """True once the task was canceled or its attempt timed out."""
        return self._job.canceled_or_timed_out

    def raise_if_cancelled(self) -> None:
        if self._job.canceled_or_timed_out:
            raise Cancelled()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; returns True early when the task is cancelled."""
        return self._job.wait(seconds)

    def extend_lease(self, seconds: float) -> int:
        """Extend the lease now (the worker also does so in the background every third of
        the lease); returns the new deadline in server ms."""
        return self._host.extend_job(self._job, seconds)

    def lock(self, name: str, ttl_seconds: float = 30.0) -> Any:
        """A distributed lock (a lease with a fencing token; Redis mode only), see
        ``chalicelib.queue.locks.DistributedLock``."""
        return self._host.make_lock(self._job, name, ttl_seconds)

    def enqueue(self, name: str, payload: dict[str, Any] | None = None, **options: Any) -> str:
        """Create a follow-up task. It is journaled first and pushed with the outcomes, so
        it survives being offline; its idempotency key (returned) defaults to one derived
        from this attempt, so a re-run of the attempt does not create it twice."""
        return self._host.enqueue_from(self._job, name, payload or {}, options)

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the task is: ``fraction`` from 0 to 1 and an optional message
        (≤ 1000 characters). The task shows the newest report as its ``progress``; its
        history gets a ``progress`` event at most once a second (the newest report is
        recorded when the attempt ends). Best effort: while the worker is offline, or if
        the server refuses or cannot be reached, the report is dropped; it never blocks
        on a dead server, and never fails the handler. Bad arguments raise ValueError."""
        self._host.report_progress(self._job, *checked_progress(fraction, message))


def checked_progress(fraction: float, message: str) -> tuple[float, str]:
    """``ctx.progress``'s arguments, checked in the handler (thread or child process):
    ValueError naming the argument."""
    bad = progress_problem(fraction, message)
    if bad is not None:
        raise ValueError(f"ctx.progress: {bad[0]} {bad[1]} (got {_shown(bad, fraction, message)})")
    return float(fraction), message


def _shown(bad: tuple[str, str], fraction: object, message: object) -> str:
    value = fraction if bad[0] == "fraction" else message
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
