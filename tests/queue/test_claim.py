"""claim.lua, enqueue.lua and the Queue wrappers against a real Redis."""

from __future__ import annotations

import random
import threading

import pytest

from chalicelib.core.errors import AlreadyFinished, LeaseLost, NotFound
from chalicelib.core.models import Lease
from chalicelib.service.deps import Services
from tests.helpers import wait_until

LEASE_MS = 30_000


def claim(
    svc: Services,
    n: int = 1,
    queues: tuple[str, ...] = ("default",),
    worker: str = "w1",
    lease_ms: int = LEASE_MS,
) -> list[Lease]:
    return svc.queue.claim(list(queues), worker, n, lease_ms).leases


def test_enqueue_claim_complete_round_trip(services: Services) -> None:
    task = services.tasks.enqueue("reports.daily", {"day": "2026-11-28"}, priority=7)
    assert task["status"] == "queued"
    [lease] = claim(services)
    assert (lease.task_id, lease.name, lease.payload) == (
        task["id"],
        "reports.daily",
        {"day": "2026-11-28"},
    )
    assert (lease.attempt, lease.fence, lease.priority) == (1, 1, 7)
    assert lease.lease_expires_ms > services.queue.clock.now_ms()
    services.queue.complete("default", lease.task_id, lease.lease_token, '{"rows": 3}')
    live = services.queue.task_hash("default", lease.task_id)
    assert live is not None and live["st"] == "succeeded" and "payload" not in live
    assert claim(services) == []


def test_claim_on_empty_and_unknown_queue_returns_nothing(services: Services) -> None:
    assert claim(services, 5, queues=("nothing-here",)) == []


def test_priority_is_strict_and_fifo_within_priority(services: Services) -> None:
    rng = random.Random(7)
    bodies = [
        {"name": "t", "priority": rng.randint(0, 9), "payload": {"i": i}} for i in range(1500)
    ]
    # Two calls, the first split into two script calls (chunks of 1,000): the sequence
    # numbers that keep FIFO order run on across calls and chunks.
    services.tasks.enqueue_many(bodies[:1200])
    services.tasks.enqueue_many(bodies[1200:])
    got: list[Lease] = []
    while batch := claim(services, 37):
        got.extend(batch)
    order = [(lease.priority, lease.payload["i"]) for lease in got]
    assert len(order) == 1500
    assert order == sorted(order, key=lambda p: (-p[0], p[1]))


def test_highest_priority_first_across_queues(services: Services) -> None:
    services.tasks.enqueue("t", queue="a", priority=1)
    services.tasks.enqueue("t", queue="b", priority=8)
    services.tasks.enqueue("t", queue="a", priority=5)
    got = claim(services, 3, queues=("a", "b"))
    assert [lease.priority for lease in got] == [8, 5, 1]


def test_delayed_task_is_not_claimable_before_run_at(services: Services) -> None:
    task = services.tasks.enqueue("t", delay_seconds=0.3)
    assert task["status"] == "scheduled"
    assert claim(services) == []
    [lease] = wait_until(lambda: claim(services), what="the delayed task")
    live = services.queue.task_hash("default", lease.task_id)
    assert live is not None
    run_at, started = int(live["run"]), int(live["sa"])
    assert started >= run_at


def test_ten_thousand_tasks_claimed_by_eight_threads_exactly_once(services: Services) -> None:
    services.tasks.enqueue_many([{"name": "t", "payload": {"i": i}} for i in range(10_000)])
    seen: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            while batch := claim(services, 10, worker=f"w{i}"):
                seen[i].extend(lease.task_id for lease in batch)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    all_ids = [tid for ids in seen for tid in ids]
    assert len(all_ids) == 10_000
    assert len(set(all_ids)) == 10_000
    assert sum(1 for ids in seen if ids) > 1  # the claimers really competed


def test_stale_or_foreign_token_is_refused_and_changes_nothing(services: Services) -> None:
    services.tasks.enqueue("t")
    [lease] = claim(services)
    before = services.queue.task_hash("default", lease.task_id)
    with pytest.raises(LeaseLost):
        services.queue.extend("default", lease.task_id, "forged:1", 1000)
    with pytest.raises(LeaseLost):
        services.queue.complete("default", lease.task_id, "forged:1", "null")
    with pytest.raises(LeaseLost):
        services.queue.fail("default", lease.task_id, "forged:1", "boom")
    assert services.queue.task_hash("default", lease.task_id) == before
    with pytest.raises(NotFound):
        services.queue.complete("default", "00000000-0000-0000-0000-000000000000", "x", "null")


def test_extend_lease_moves_the_deadline_on_the_server_clock(services: Services) -> None:
    services.tasks.enqueue("t")
    [lease] = claim(services, lease_ms=1000)
    expires, canceled = services.queue.extend("default", lease.task_id, lease.lease_token, 60_000)
    assert not canceled
    assert expires >= lease.lease_expires_ms + 58_000
    score = services.redis.zscore(services.keys.queue("default").running, lease.task_id)
    assert int(score) == expires


def test_outcome_after_finish_is_refused_as_duplicate(services: Services) -> None:
    services.tasks.enqueue("t")
    [lease] = claim(services)
    services.queue.complete("default", lease.task_id, lease.lease_token, "1")
    with pytest.raises(AlreadyFinished):
        services.queue.complete("default", lease.task_id, lease.lease_token, "2")
    with pytest.raises(AlreadyFinished):
        services.queue.fail("default", lease.task_id, lease.lease_token, "late")
    stats = services.queue.stats(["default"])["default"]
    assert stats["succeeded"] == 1 and stats["duplicates"] == 2
    live = services.queue.task_hash("default", lease.task_id)
    assert live is not None and live["res"] == "1"


def _expire(services: Services, lease: Lease) -> None:
    """Wait (on the Redis clock) until the lease is past its deadline, then sweep."""
    wait_until(lambda: services.queue.clock.now_ms() > lease.lease_expires_ms + 5, what="expiry")
    wait_until(
        lambda: services.queue.reap(lease.queue)[1] >= 1 or _status(services, lease) != "running"
    )


def _status(services: Services, lease: Lease) -> str | None:
    live = services.queue.task_hash(lease.queue, lease.task_id)
    return None if live is None else live["st"]


def test_expired_lease_counts_as_failed_attempt_and_fence_grows(services: Services) -> None:
    services.tasks.enqueue(
        "t", backoff={"base_seconds": 0, "factor": 1, "max_seconds": 0, "jitter": False}
    )
    [first] = claim(services, lease_ms=20)
    _expire(services, first)
    [second] = wait_until(lambda: claim(services, worker="w2"))
    assert second.task_id == first.task_id
    assert second.attempt == 2 and second.fence == first.fence + 1
    assert services.queue.stats(["default"])["default"]["failures"] == 1


def test_late_result_is_accepted_when_nobody_finished_first(services: Services) -> None:
    services.tasks.enqueue(
        "t", backoff={"base_seconds": 0, "factor": 1, "max_seconds": 0, "jitter": False}
    )
    [first] = claim(services, lease_ms=20)
    _expire(services, first)
    [second] = wait_until(lambda: claim(services, worker="w2"))
    services.queue.complete("default", first.task_id, first.lease_token, '"late"', "w1")
    with pytest.raises(AlreadyFinished):
        services.queue.complete("default", second.task_id, second.lease_token, '"second"', "w2")
    with pytest.raises(AlreadyFinished):
        services.queue.extend("default", second.task_id, second.lease_token, 1000)
    live = services.queue.task_hash("default", first.task_id)
    assert live is not None and live["st"] == "succeeded" and live["res"] == '"late"'
    assert services.redis.zcard(services.keys.queue("default").running) == 0


def test_late_result_is_refused_when_another_worker_finished_first(services: Services) -> None:
    services.tasks.enqueue(
        "t", backoff={"base_seconds": 0, "factor": 1, "max_seconds": 0, "jitter": False}
    )
    [first] = claim(services, lease_ms=20)
    _expire(services, first)
    [second] = wait_until(lambda: claim(services, worker="w2"))
    services.queue.complete("default", second.task_id, second.lease_token, '"second"', "w2")
    with pytest.raises(AlreadyFinished):
        services.queue.complete("default", first.task_id, first.lease_token, '"late"', "w1")
    live = services.queue.task_hash("default", first.task_id)
    assert live is not None and live["res"] == '"second"'
    assert services.queue.stats(["default"])["default"]["duplicates"] == 1


def test_release_gives_the_task_back_without_counting_the_attempt(services: Services) -> None:
    services.tasks.enqueue("t", payload={"n": 1})
    services.tasks.enqueue("t", payload={"n": 2})
    [lease] = claim(services)
    services.queue.release("default", lease.task_id, lease.lease_token)
    [again] = claim(services)
    assert again.task_id == lease.task_id  # back at the front of its priority
    assert again.attempt == 1 and again.fence == 2
    with pytest.raises(LeaseLost):
        services.queue.complete("default", lease.task_id, lease.lease_token + "x", "null")


def test_pipelines_survive_redis_losing_its_script_cache(services: Services) -> None:
    from chalicelib.core.models import Outcome

    services.redis.script_flush()  # as after a Redis restart or failover
    services.tasks.enqueue_many([{"name": "t"}, {"name": "t"}])
    services.redis.script_flush()
    leases = claim(services, 2)
    services.redis.script_flush()
    assert (
        services.queue.extend_many([(le.queue, le.task_id, le.lease_token, 1000) for le in leases])[
            0
        ][0]
        == 0
    )
    services.redis.script_flush()
    outcomes = [Outcome("default", le.task_id, le.lease_token, True) for le in leases]
    assert services.queue.report_many(outcomes) == [0, 0]
