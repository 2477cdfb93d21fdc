"""How a worker talks to the queue: one narrow interface, two implementations.

:class:`RedisTransport` calls the queue core directly (``chalicelib.queue.scripts``);
``workers.http_transport.HttpTransport`` speaks the worker endpoints of docs/api.md. Both
raise :class:`chalicelib.core.errors.Unavailable` when the server cannot be reached, which is
what sends the worker offline; every other refusal is data (a rejected outcome, a lost
lease), never an exception, so one bad item never fails a batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from chalicelib.core.errors import ApiError, Unavailable
from chalicelib.core.models import Lease, Outcome
from chalicelib.queue.scripts import REASONS, Code, Queue
from chalicelib.service.fleet import Fleet
from chalicelib.service.outcomes import report as report_outcomes
from chalicelib.service.payloads import resolve
from chalicelib.service.tasks import TaskService

#: Idle workers re-check at least this often (due retries, expired leases of others).
MAX_IDLE_WAIT_S = 1.0


@dataclass(frozen=True, slots=True)
class Extended:
    """The answer to one lease extension."""

    task_id: str
    expires_ms: int = 0
    #: the task was canceled: stop its handler, report nothing
    canceled: bool = False
    #: why the lease is no longer ours (``lease_lost``, ``already_finished``…), or None
    lost: str | None = None


@dataclass(frozen=True)
class Synced:
    """The answer to a sync: every outcome sent is in ``accepted`` or ``rejected``."""

    accepted: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    #: idempotency keys of created tasks the server now has (new or deduplicated)
    created: list[str] = field(default_factory=list)


class Transport(Protocol):
    mode: str

    def register(
        self, worker_id: str, queues: Sequence[str], hostname: str, concurrency: int, *, first: bool
    ) -> float:
        """Announce (or heartbeat) the worker; returns the heartbeat interval in seconds."""
        ...

    def deregister(self, worker_id: str) -> None: ...

    def claim(
        self, worker_id: str, queues: Sequence[str], max_tasks: int, lease_ms: int
    ) -> tuple[list[Lease], int]:
        """Leases (highest priority first) and a retry-after in ms (rate limit), or 0."""
        ...

    def extend(self, items: Sequence[tuple[Lease, int]]) -> list[Extended]:
        """Extend each ``(lease, extend_ms)``; one answer per item, in order."""
        ...

    def sync(
        self, worker_id: str, reports: Sequence[Outcome], created: Sequence[dict[str, Any]]
    ) -> Synced:
        """Push created tasks and report outcomes. Re-sending is harmless. Each outcome
        goes under its own lease token and its ``worker_id`` (``worker_id`` when it has
        none): a journal's previous owner's outcomes stay its own."""
        ...

    def release(self, leases: Sequence[Lease]) -> None:
        """Give tasks back without counting the attempt (graceful shutdown)."""
        ...

    def progress(self, lease: Lease, fraction: float, message: str) -> str | None:
        """Report a running task's progress (``ctx.progress``, arguments checked); None
        when accepted, else why it was refused (``lease_lost``, ``not_found``…)."""
        ...

    def wait_for_work(self, queues: Sequence[str], timeout_s: float) -> None:
        """Block until work may be there (an enqueue, a due task) or ``timeout_s``."""
        ...

    def close(self) -> None: ...


@contextmanager
def redis_errors() -> Iterator[None]:
    """A connection problem means "offline"; anything else is a bug and propagates."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable(f"Redis is unreachable: {exc}") from exc
    except redis.ResponseError as exc:
        if "LOADING" in str(exc) or "MASTERDOWN" in str(exc):
            raise Unavailable(f"Redis is not ready: {exc}") from exc
        raise


class RedisTransport:
    """Direct Redis: the queue's Lua scripts, one pipeline per batch."""

    mode = "redis"

    def __init__(self, queue: Queue, fleet: Fleet, tasks: TaskService) -> None:
        self.queue = queue
        self.fleet = fleet
        self.tasks = tasks

    def register(
        self, worker_id: str, queues: Sequence[str], hostname: str, concurrency: int, *, first: bool
    ) -> float:
        from chalicelib.service.fleet import HEARTBEAT_INTERVAL_S

        with redis_errors():
            self.fleet.heartbeat(
                worker_id,
                queues=queues,
                hostname=hostname,
                concurrency=concurrency,
                mode=self.mode,
                record=first,
            )
        return float(HEARTBEAT_INTERVAL_S)

    def deregister(self, worker_id: str) -> None:
        with redis_errors():
            self.fleet.forget(worker_id)

    def claim(
        self, worker_id: str, queues: Sequence[str], max_tasks: int, lease_ms: int
    ) -> tuple[list[Lease], int]:
        with redis_errors():
            got = self.queue.claim(queues, worker_id, max_tasks, lease_ms)
        payloads = self.tasks.payloads
        if payloads is None:
            return got.leases, got.retry_after_ms
        # Payloads offloaded to S3 come back in full before any handler sees them.
        leases = [le._replace(payload=resolve(le.payload, payloads)) for le in got.leases]
        return leases, got.retry_after_ms

    def extend(self, items: Sequence[tuple[Lease, int]]) -> list[Extended]:
        with redis_errors():
            replies = self.queue.extend_many(
                [(lease.queue, lease.task_id, lease.lease_token, ms) for lease, ms in items]
            )
        out = []
        for (lease, _), (code, expires, canceled) in zip(items, replies, strict=True):
            if code == Code.OK:
                out.append(Extended(lease.task_id, expires, canceled=canceled))
            elif code == Code.CANCELED:
                out.append(Extended(lease.task_id, canceled=True, lost="canceled"))
            else:
                out.append(Extended(lease.task_id, lost=REASONS.get(Code(code), "lease_lost")))
        return out

    def sync(
        self, worker_id: str, reports: Sequence[Outcome], created: Sequence[dict[str, Any]]
    ) -> Synced:
        pushed = self._push_created(created)
        payloads = self.tasks.payloads
        outcomes = reports
        if payloads is not None:
            outcomes = [
                o._replace(result_json=payloads.offload_result(o.task_id, o.result_json))
                if o.succeeded
                else o
                for o in reports
            ]
        with redis_errors():
            verdicts = report_outcomes(
                self.queue, outcomes, recognise_resends=False, worker_id=worker_id
            )
        result = Synced(created=pushed)
        for r, reason in zip(reports, verdicts, strict=True):
            if reason is None:
                result.accepted.append(r.task_id)
            else:
                result.rejected.append((r.task_id, reason))
        return result

    def _push_created(self, bodies: Sequence[dict[str, Any]]) -> list[str]:
        if not bodies:
            return []
        pushed: list[str] = []
        with redis_errors():
            try:
                self.tasks.enqueue_many(bodies)
                return [b["idempotency_key"] for b in bodies]
            except Unavailable:
                raise
            except ApiError:
                pass  # one bad body: push the rest one by one, drop only the bad ones
            for body in bodies:
                try:
                    self.tasks.enqueue_many([body])
                except Unavailable:
                    raise
                except ApiError:
                    pass  # invalid or conflicting forever: retrying would not help
                pushed.append(body["idempotency_key"])
        return pushed

    def release(self, leases: Sequence[Lease]) -> None:
        with redis_errors():
            for lease in leases:
                try:
                    self.queue.release(lease.queue, lease.task_id, lease.lease_token)
                except ApiError:
                    pass  # finished, canceled or taken over meanwhile: nothing to give back

    def progress(self, lease: Lease, fraction: float, message: str) -> str | None:
        with redis_errors():
            code, _ = self.queue.progress_code(
                lease.queue, lease.task_id, lease.lease_token, fraction, message
            )
        return None if code == Code.OK else REASONS.get(code, "lease_lost")

    def wait_for_work(self, queues: Sequence[str], timeout_s: float) -> None:
        with redis_errors():
            self.queue.wait_for_work(queues, min(timeout_s, MAX_IDLE_WAIT_S))

    def close(self) -> None:
        pass
