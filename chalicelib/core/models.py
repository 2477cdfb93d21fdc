"""The domain's data: task statuses, backoff policy, tasks to create, leases and outcomes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any, NamedTuple

from chalicelib.core.jsonbody import problem


class TaskStatus(StrEnum):
    SCHEDULED = "scheduled"  #: waiting for run_at
    QUEUED = "queued"  #: ready to be claimed
    RUNNING = "running"  #: leased by a worker
    RETRYING = "retrying"  #: an attempt failed; waiting for its backoff
    SUCCEEDED = "succeeded"
    DEAD = "dead"  #: attempts exhausted: the dead-letter queue
    CANCELED = "canceled"


TERMINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.DEAD, TaskStatus.CANCELED})


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt n+1: ``base * factor**(n-1)`` capped at ``max``; with
    ``jitter`` a uniformly random fraction of it ("full jitter", so that a burst of
    failures does not retry in lockstep)."""

    base_seconds: float = 1.0
    factor: float = 2.0
    max_seconds: float = 3600.0
    jitter: bool = True

    # Cached: a bulk enqueue shares one policy object across its tasks.
    @cached_property
    def encoded(self) -> str:
        """The compact form stored in the task hash and read by the Lua scripts."""
        return f"{self.base_seconds!r},{self.factor!r},{self.max_seconds!r},{int(self.jitter)}"

    @classmethod
    def decode(cls, encoded: str) -> Backoff:
        """The inverse of :attr:`encoded`."""
        base, factor, cap, jitter = encoded.split(",")
        return cls(float(base), float(factor), float(cap), jitter == "1")

    @cached_property
    def json_text(self) -> str:
        return json.dumps(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            "base_seconds": self.base_seconds,
            "factor": self.factor,
            "max_seconds": self.max_seconds,
            "jitter": self.jitter,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Backoff:
        return cls(
            base_seconds=float(data["base_seconds"]),
            factor=float(data["factor"]),
            max_seconds=float(data["max_seconds"]),
            jitter=bool(data["jitter"]),
        )


DEFAULT_BACKOFF = Backoff()


class NewTask(NamedTuple):
    """A validated task about to be created (the id is chosen before anything is written).
    A named tuple for the reason given at :class:`Lease`: a bulk enqueue builds one per
    task."""

    id: str
    name: str
    queue: str
    priority: int
    payload: dict[str, Any]
    payload_json: str
    max_attempts: int
    timeout_seconds: int
    backoff: Backoff
    run_at_ms: int
    created_at_ms: int
    scheduled: bool  #: True when run_at lies in the future at creation
    idempotency_key: str | None = None
    request_hash: str | None = None
    lock_key: str | None = None
    schedule_id: str | None = None
    webhook_url: str | None = None

    @property
    def status(self) -> TaskStatus:
        return TaskStatus.SCHEDULED if self.scheduled else TaskStatus.QUEUED

    def row_json(self) -> str:
        """The task's row as the recorder inserts it for a queue of durability "queue"
        (queries.sql insert_created reads these names), as JSON text. Written by hand
        around the payload's text, which is already JSON, so the payload is not encoded
        again. No idempotency key or schedule: such creates keep the record path."""
        return (
            f'{{"name":{json.dumps(self.name)},"queue":{json.dumps(self.queue)},'
            f'"priority":{self.priority},"payload":{self.payload_json},'
            f'"max_attempts":{self.max_attempts},"timeout_seconds":{self.timeout_seconds},'
            f'"backoff":{self.backoff.json_text},"lock_key":{json.dumps(self.lock_key)},'
            f'"webhook_url":{json.dumps(self.webhook_url)},"run_at":{self.run_at_ms},'
            f'"created_at":{self.created_at_ms}}}'
        )


class Durability(StrEnum):
    """When a queue's new task counts as accepted (``PATCH /queues/{name}``)."""

    RECORD = "record"  #: its PostgreSQL row committed (the default)
    QUEUE = "queue"  #: its enqueue script ran in Redis; the recorder writes the row


class Lease(NamedTuple):
    """A claimed task as a worker sees it. A named tuple, like :class:`Outcome`: one of
    each is built per task on the hot path, and a frozen
    dataclass costs three times as much to build, all of it on the worker's GIL."""

    task_id: str
    queue: str
    name: str
    payload: dict[str, Any]
    priority: int
    attempt: int
    max_attempts: int
    timeout_seconds: int
    fence: int
    lease_token: str
    lease_expires_ms: int
    lock_key: str | None = None


@dataclass(frozen=True)
class Claim:
    """What one claim got: leases, and when to ask again if a rate limit held tasks back."""

    leases: list[Lease]
    retry_after_ms: int = 0  #: 0 unless a rate limit held tasks back


class Outcome(NamedTuple):
    """The outcome of one attempt: as a worker reports it (``Queue.report_many``, ``POST
    /tasks/sync``) and journals it while offline."""

    queue: str
    task_id: str
    token: str
    succeeded: bool
    result_json: str = "null"
    error: str = ""
    #: a retry delay the handler asked for (``Retry(delay_seconds)``); None: the backoff
    retry_delay_ms: int | None = None
    #: the worker that ran the attempt and is reported as its author; "": the worker
    #: reporting it
    worker_id: str = ""
    started_ms: int = 0
    finished_ms: int = 0


# -- progress (ctx.progress, POST /tasks/{id}/progress) ------------------------------------

#: The longest progress message.
MAX_PROGRESS_MESSAGE = 1000
#: Least time between two recorded ``progress`` events of a task (progress.lua); the hash
#: keeps every report, the newest always.
PROGRESS_EVERY_MS = 1000


def progress_problem(fraction: object, message: object) -> tuple[str, str] | None:
    """What is wrong with a progress report, as ``(argument, message)``, or None. The one
    check of both ways in: a handler's ``ctx.progress`` and the HTTP endpoint."""
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, int | float)
        or not math.isfinite(fraction)
        or not 0 <= fraction <= 1
    ):
        return "fraction", "must be a number from 0 to 1"
    if not isinstance(message, str) or len(message) > MAX_PROGRESS_MESSAGE:
        return "message", f"must be a string of at most {MAX_PROGRESS_MESSAGE} characters"
    bad = problem(message)  # NUL or a lone surrogate: PostgreSQL could not store it
    if bad is not None:
        return "message", bad[1]
    return None


def progress_text(fraction: float) -> str:
    """A fraction as the task hash and the events keep it: at most 6 decimals, so that the
    live view and the record show the same number (0.4 → ``"0.4"``, 1 → ``"1"``)."""
    return f"{fraction:.6f}".rstrip("0").rstrip(".") or "0"
