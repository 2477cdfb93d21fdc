"""The periodic jobs behind the app's scheduled functions (EventBridge rules in AWS,
``dtq scheduler`` locally): the cron tick, the lease reaper, the reconciler, retention,
and a bounded recorder flush.

In AWS no long-running process exists besides the workers, so these keep the system
moving when no worker happens to: due and retrying tasks are promoted and expired leases
retried by the reaper, and the record follows Redis through the flush.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chalicelib.core.clock import utcnow
from chalicelib.core.forms import parse_datetime
from chalicelib.service.deps import Services
from chalicelib.service.firing import FireReport, fire_due
from chalicelib.service.recorder import Recorder
from chalicelib.service.recover import restore_missing

log = logging.getLogger("dtq.maintenance")

#: Rows deleted per statement by retention: short transactions, no long locks.
PURGE_BATCH = 1000
#: Task ids per state set that the reconciler checks against the record, per queue.
RECONCILE_SAMPLE = 200
#: Seconds a recorder flush may run (a Lambda is given 30 s in .chalice/config.json).
FLUSH_BUDGET_S = 20.0


def event_now(event_time: str | None, wall: datetime) -> datetime:
    """The ``now`` of a scheduled invocation: the later of its event's time and the wall
    clock. The event time lets a runner tick ahead of the wall clock (``dtq scheduler
    --clock-offset``, tests); the wall clock covers a late or re-delivered event."""
    if event_time:
        try:
            return max(parse_datetime(event_time), wall)
        except ValueError:
            log.warning("scheduled event with an invalid time %r", event_time[:64])
    return wall


def cron_tick(svc: Services, now: datetime) -> FireReport:
    report = fire_due(svc.tasks, now)
    if report.fired or report.skipped or report.failed:
        log.info("cron tick %s: %s", now.isoformat(), report)
    return report


def reap(svc: Services) -> dict[str, tuple[int, int]]:
    """Promote due scheduled and retrying tasks and expire lapsed leases (retry or dead)
    in every known queue: (promoted, expired) per queue that had any."""
    done = {}
    for queue in svc.queue.known_queues():
        promoted, expired = svc.queue.reap(queue)
        if promoted or expired:
            done[queue] = (promoted, expired)
    return done


@dataclass
class Reconciliation:
    checked: int = 0  #: non-terminal tasks of the record looked up in Redis
    restored: int = 0  #: of those, missing from Redis and put back
    sampled: int = 0  #: task ids of Redis looked up in the record
    unrecorded: list[str] = field(default_factory=list)  #: in Redis, not in the record


def reconcile(svc: Services, sample: int = RECONCILE_SAMPLE) -> Reconciliation:
    """Both directions: recorded live tasks missing from Redis are restored (e.g. created
    while Redis was down); Redis tasks missing from the record are reported, never
    dropped. A task is recorded before it enters Redis, so each one is an anomaly, except
    a task of a queue of durability "queue" whose `created` event waits for a recorder."""
    restore = restore_missing(svc.tasks)
    out = Reconciliation(checked=restore.checked, restored=restore.restored)
    sampled = _redis_sample(svc, sample)
    out.sampled = len(sampled)
    if sampled:
        known = svc.store.recorded_ids(list(sampled))
        stray = [
            i
            for i, queue in sampled.items()
            if i not in known and svc.queue.created_event(queue, i) is None
        ]
        # One recorded between the two looks is not stray either.
        recorded_since = svc.store.recorded_ids(stray) if stray else set()
        out.unrecorded = [i for i in stray if i not in recorded_since]
    if out.unrecorded:
        log.warning(
            "%d task(s) in Redis have no record: %s",
            len(out.unrecorded),
            ", ".join(out.unrecorded[:20]),
        )
    return out


def _redis_sample(svc: Services, sample: int) -> dict[str, str]:
    """Task ids at the head of every state set of every queue → their queue."""
    pipe = svc.redis.pipeline(transaction=False)
    asked = []
    for queue in svc.queue.known_queues():
        k = svc.keys.queue(queue)
        for key in (k.ready, k.scheduled, k.retrying, k.running):
            pipe.zrange(key, 0, sample - 1)
            asked.append(queue)
    ids: dict[str, str] = {}
    for queue, members in zip(asked, pipe.execute(), strict=True):
        ids.update((m.decode(), queue) for m in members)
    return {i: q for i, q in ids.items() if _is_uuid(i)}


def _is_uuid(value: str) -> bool:
    return len(value) == 36 and value.count("-") == 4


@dataclass
class Retention:
    tasks: int = 0
    fires: int = 0


def purge(
    svc: Services, now: datetime, *, batch: int = PURGE_BATCH, budget_s: float = FLUSH_BUDGET_S
) -> Retention:
    """Delete terminal tasks (with their history) and schedule fire records older than
    DTQ_RETENTION_DAYS, in batches, until none is left or the time budget is spent."""
    before = now - timedelta(days=svc.settings.retention_days)
    out = Retention()
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        gone = svc.store.purge_finished(before, batch)
        out.tasks += gone
        if gone < batch:
            break
    while time.monotonic() < deadline:
        n = svc.store.purge_schedule_fires(before, batch)
        out.fires += n
        if n < batch:
            break
    if out.tasks or out.fires:
        log.info(
            "retention: purged %d task(s) and %d fire record(s) before %s",
            out.tasks,
            out.fires,
            before.isoformat(),
        )
    return out


def flush_record(svc: Services, budget_s: float = FLUSH_BUDGET_S) -> int:
    """Record pending transitions until the streams are empty or the budget is spent.
    Returns the number of stream entries recorded."""
    recorder = Recorder(svc.queue, svc.store, consumer_name())
    deadline = time.monotonic() + budget_s
    total = 0
    while time.monotonic() < deadline and (n := recorder.drain_once()):
        total += n
    return total


def consumer_name() -> str:
    # Stable per process (a Lambda container, a scheduler): its pending entries are its own.
    return f"{socket.gethostname()}:{os.getpid()}:maintenance"


def budget_from(context: Any, default_s: float = FLUSH_BUDGET_S, margin_s: float = 5.0) -> float:
    """The time a job may take: what its Lambda invocation has left, less a margin."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return default_s
    return max(1.0, min(default_s, float(remaining()) / 1000 - margin_s))


# -- entry points of the app's scheduled functions: JSON summaries ----------------------


def on_cron_tick(svc: Services, event_time: str | None) -> dict[str, Any]:
    return asdict(cron_tick(svc, event_now(event_time, utcnow())))


def on_reap(svc: Services) -> dict[str, Any]:
    reaped = reap(svc)
    return {"reaped": {q: {"promoted": p, "expired": e} for q, (p, e) in reaped.items()}}


def on_reconcile(svc: Services) -> dict[str, Any]:
    return asdict(reconcile(svc))


def on_retention(svc: Services, event_time: str | None, context: Any) -> dict[str, Any]:
    return asdict(purge(svc, event_now(event_time, utcnow()), budget_s=budget_from(context)))


def on_record_flush(svc: Services, context: Any) -> dict[str, Any]:
    return {"recorded": flush_record(svc, budget_from(context))}


def on_deliver_notifications(svc: Services, context: Any) -> dict[str, Any]:
    """Webhook and SNS deliveries that are due: in AWS no long-running process does it."""
    from chalicelib.service.notify import Notifier

    notifier = Notifier.from_settings(svc.settings, svc.store)
    try:
        return {"delivered": notifier.drain(budget_from(context))}
    finally:
        notifier.close()
