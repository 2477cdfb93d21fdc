"""The task hash ``{q}:task:<id>``: the one codec between the fields the Lua scripts keep
for each live task and Python.

Only this module and the scripts spell a field's name; everything else reads a
:class:`LiveTask` or writes through :func:`static_fields` / :func:`restored_fields`.
``tests/unit/test_taskhash.py`` binds the names below to the ones the scripts use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from chalicelib.core.models import NewTask

# Written once, at enqueue (or when a task is restored from its record).
NAME, PRIORITY, PAYLOAD = "name", "pri", "payload"
MAX_ATTEMPTS, TIMEOUT, BACKOFF, LOCK_KEY = "max", "tmo", "bo", "lk"
# Changed by the scripts as the task moves.
STATUS, ATTEMPTS, FENCE, VERSION = "st", "att", "fence", "v"
RUN_AT, STARTED, FINISHED = "run", "sa", "fa"
WORKER, TOKEN, PAST_TOKENS, LEASE_EXPIRY = "wid", "tok", "ptok", "lx"
ERROR, RESULT, CANCEL_REQUESTED = "err", "res", "cr"
# Progress (progress.lua): the newest report, when the last `progress` event was written,
# and whether the newest is still unrecorded (held back by the once-a-second throttle).
PROGRESS_FRACTION, PROGRESS_MESSAGE, PROGRESS_AT = "pf", "pm", "pat"
PROGRESS_EMITTED, PROGRESS_UNRECORDED = "pe", "pu"
# Durability "queue": the millisecond (server time) the task's enqueue script ran, from
# which its `created` event (its row, until the recorder has written it) is found.
CREATED_ENTRY = "ce"

FIELDS = frozenset(
    {
        NAME,
        PRIORITY,
        PAYLOAD,
        MAX_ATTEMPTS,
        TIMEOUT,
        BACKOFF,
        LOCK_KEY,
        STATUS,
        ATTEMPTS,
        FENCE,
        VERSION,
        RUN_AT,
        STARTED,
        FINISHED,
        WORKER,
        TOKEN,
        PAST_TOKENS,
        LEASE_EXPIRY,
        ERROR,
        RESULT,
        CANCEL_REQUESTED,
        PROGRESS_FRACTION,
        PROGRESS_MESSAGE,
        PROGRESS_AT,
        PROGRESS_EMITTED,
        PROGRESS_UNRECORDED,
        CREATED_ENTRY,
    }
)

_B = {name: name.encode() for name in FIELDS}


class LiveProgress(NamedTuple):
    """The newest progress a handler reported (``ctx.progress``)."""

    fraction: float
    message: str
    at_ms: int


class LiveTask(NamedTuple):
    """A task as Redis holds it now: what may be newer than its record."""

    status: str
    version: int
    attempts: int
    fence: int
    cancel_requested: bool
    worker_id: str | None
    lease_token: str | None  #: only while the task runs
    run_at_ms: int | None
    started_ms: int | None
    finished_ms: int | None
    error: str | None
    result_json: str | None
    backoff: str | None  #: ``Backoff.encoded``; see :meth:`Backoff.decode`
    #: always the newest report while the hash lives (the record may trail it by up to
    #: a second: progress events are throttled)
    progress: LiveProgress | None = None


def _text(raw: Mapping[bytes, bytes], field: str) -> str | None:
    value = raw.get(_B[field])
    return None if value is None else value.decode()


def _int(raw: Mapping[bytes, bytes], field: str) -> int | None:
    value = raw.get(_B[field])
    return None if value is None else int(value)


def decode(raw: Mapping[bytes, bytes]) -> LiveTask | None:
    """The hash as HGETALL returns it; None when Redis no longer holds the task."""
    if not raw:
        return None
    status = raw[_B[STATUS]].decode()
    return LiveTask(
        status=status,
        version=_int(raw, VERSION) or 0,
        attempts=_int(raw, ATTEMPTS) or 0,
        fence=_int(raw, FENCE) or 0,
        cancel_requested=raw.get(_B[CANCEL_REQUESTED]) == b"1",
        worker_id=_text(raw, WORKER),
        lease_token=_text(raw, TOKEN) if status == "running" else None,
        run_at_ms=_int(raw, RUN_AT),
        started_ms=_int(raw, STARTED),
        finished_ms=_int(raw, FINISHED),
        error=_text(raw, ERROR),
        result_json=_text(raw, RESULT),
        backoff=_text(raw, BACKOFF),
        progress=_progress(raw),
    )


def _progress(raw: Mapping[bytes, bytes]) -> LiveProgress | None:
    fraction, at = raw.get(_B[PROGRESS_FRACTION]), raw.get(_B[PROGRESS_AT])
    if fraction is None or at is None:
        return None
    return LiveProgress(float(fraction), _text(raw, PROGRESS_MESSAGE) or "", int(at))


def static_fields(task: NewTask) -> list[str]:
    """The fields a new task is born with (enqueue.lua adds status and run time)."""
    fields = [
        NAME,
        task.name,
        PRIORITY,
        str(task.priority),
        PAYLOAD,
        task.payload_json,
        MAX_ATTEMPTS,
        str(task.max_attempts),
        TIMEOUT,
        str(task.timeout_seconds),
        BACKOFF,
        task.backoff.encoded,
    ]
    if task.lock_key is not None:
        fields += [LOCK_KEY, task.lock_key]
    return fields


def restored_fields(task: NewTask, *, attempts: int, fence: int, version: int) -> list[Any]:
    """The fields a task is re-created with from its record (restore.lua adds status and
    run time): its static fields, and the counters that must never go back."""
    return [*static_fields(task), ATTEMPTS, attempts, FENCE, fence, VERSION, version]
