"""Progress reports (progress.lua, ``Queue.progress``) against a real Redis and the
record: only the lease holder may report, the hash always keeps the newest report, the
history gets at most one ``progress`` event a second per task, and a report the throttle
held back is recorded when the attempt ends."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chalicelib.core.errors import AlreadyFinished, LeaseLost, NotFound, TaskCanceled
from chalicelib.core.models import PROGRESS_EVERY_MS, Lease
from chalicelib.service.deps import Services
from chalicelib.service.recorder import Recorder

NO_WAIT = {"base_seconds": 0, "factor": 1, "max_seconds": 0, "jitter": False}


def claim(svc: Services) -> Lease:
    [lease] = svc.queue.claim(["default"], "w1", 1, 30_000).leases
    return lease


def report(svc: Services, lease: Lease, fraction: float, message: str = "") -> bool:
    return svc.queue.progress("default", lease.task_id, lease.lease_token, fraction, message)


def progress_events(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in task["history"] if e["event"] == "progress"]


def record(svc: Services) -> None:
    Recorder(svc.queue, svc.store, "t").drain()


def test_a_chatty_handler_records_at_most_one_event_a_second_and_the_newest_always(
    services: Services,
) -> None:
    task = services.tasks.enqueue("t")
    lease = claim(services)
    start = time.monotonic()
    recorded = [report(services, lease, (i + 1) / 50, f"step {i + 1}") for i in range(50)]
    elapsed_s = time.monotonic() - start
    # The first report is recorded; then at most one per started second of reporting.
    assert recorded[0]
    assert sum(recorded) <= 1 + int(elapsed_s * 1000 // PROGRESS_EVERY_MS)
    live = services.tasks.get(task["id"])
    assert live["progress"]["fraction"] == 1.0 and live["progress"]["message"] == "step 50"
    assert live["progress"]["at"] is not None
    record(services)
    # The record trails (the newest report was held back), the live view does not.
    assert services.tasks.get(task["id"])["progress"]["message"] == "step 50"
    row = services.store.get_task(task["id"])
    newest_recorded = max(i for i, r in enumerate(recorded) if r) + 1
    assert row is not None and row["progress"]["message"] == f"step {newest_recorded}"

    services.queue.complete("default", lease.task_id, lease.lease_token, "null")
    record(services)
    # The held-back report was written just before the outcome: the record ends with it.
    row = services.store.get_task(task["id"])
    assert row is not None and row["progress"]["fraction"] == 1.0
    assert row["progress"]["message"] == "step 50"
    done = services.tasks.get(task["id"])
    events = progress_events(done)
    assert 2 <= len(events) <= 2 + int(elapsed_s)
    assert events[-1]["progress"]["message"] == "step 50"
    assert [e["event"] for e in done["history"]][-2:] == ["progress", "succeeded"]
    # Recorded at most once a second, apart from the last (written at the attempt's end).
    ats = [e["at"] for e in events[:-1]]
    assert ats == sorted(ats) and len(ats) == sum(recorded)


def test_the_view_after_the_hash_is_gone_comes_from_the_record(services: Services) -> None:
    task = services.tasks.enqueue("t")
    lease = claim(services)
    report(services, lease, 0.25, "a quarter")
    services.queue.complete("default", lease.task_id, lease.lease_token, "null")
    record(services)
    services.redis.delete(services.keys.queue("default").task(task["id"]))
    got = services.tasks.get(task["id"])
    assert got["progress"]["fraction"] == 0.25 and got["progress"]["message"] == "a quarter"
    [event] = progress_events(got)
    assert event["progress"] == got["progress"]
    listed, _ = services.tasks.list()
    assert listed[0]["progress"] == got["progress"]


def test_only_the_current_holder_of_a_running_task_may_report(services: Services) -> None:
    task = services.tasks.enqueue("t", max_attempts=2, backoff=NO_WAIT)
    with pytest.raises(NotFound):
        services.queue.progress("default", "0193a000-0000-7000-8000-00000000abcd", "x", 0.5)
    with pytest.raises(LeaseLost):  # queued: nobody holds it
        services.queue.progress("default", task["id"], "x", 0.5)
    first = claim(services)
    with pytest.raises(LeaseLost):
        services.queue.progress("default", task["id"], "not-mine", 0.5)
    report(services, first, 0.5, "first attempt")
    services.queue.fail("default", first.task_id, first.lease_token, "boom")
    second = claim(services)
    with pytest.raises(LeaseLost):  # the stale lease of the first attempt
        report(services, first, 0.9)
    # A retried task shows the previous attempt's progress until the new one reports.
    assert services.tasks.get(task["id"])["progress"]["message"] == "first attempt"
    report(services, second, 0.1, "second attempt")
    services.queue.complete("default", second.task_id, second.lease_token, "null")
    with pytest.raises(AlreadyFinished):
        report(services, second, 1.0)
    got = services.tasks.get(task["id"])
    assert got["progress"]["message"] == "second attempt"
    other = services.tasks.enqueue("t")
    lease = claim(services)
    services.tasks.cancel(other["id"])
    services.queue.extend("default", lease.task_id, lease.lease_token, 30_000)  # ends it
    with pytest.raises(TaskCanceled):
        report(services, lease, 0.5)


def test_a_held_back_report_is_recorded_when_the_lease_ends_without_success(
    services: Services,
) -> None:
    task = services.tasks.enqueue("t", max_attempts=1)
    lease = claim(services)
    assert report(services, lease, 0.1, "recorded")
    assert not report(services, lease, 0.2, "held back")
    services.queue.fail("default", lease.task_id, lease.lease_token, "boom")
    record(services)
    services.redis.delete(services.keys.queue("default").task(task["id"]))
    got = services.tasks.get(task["id"])
    assert got["status"] == "dead" and got["progress"]["message"] == "held back"
    names = [e["event"] for e in got["history"]]
    assert names[-4:] == ["progress", "progress", "failed", "dead"]
    # The history's progress event of the failed attempt carries no error of its own.
    assert progress_events(got)[-1]["error"] is None
