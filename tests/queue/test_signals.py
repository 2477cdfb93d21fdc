"""The queue's wake-up signal list against a real Redis: what pushes a signal and what
clears them. A worker whose claim came back short claims again only when a signal comes
(or its wait, bounded by the next due time, ends), so every way work becomes claimable
must push one, and signals for work already taken must not pile up."""

from __future__ import annotations

from chalicelib.core.models import Lease
from chalicelib.service.deps import Services


def signals(services: Services, queue: str = "default") -> int:
    return int(services.redis.llen(services.keys.queue(queue).signal))


def clear(services: Services, queue: str = "default") -> None:
    services.redis.delete(services.keys.queue(queue).signal)


def claim(services: Services, n: int) -> list[Lease]:
    return services.queue.claim(["default"], "w1", n, 30_000).leases


def test_ready_tasks_push_a_signal_each_up_to_64(services: Services) -> None:
    services.tasks.enqueue_many([{"name": "t"}] * 3)
    assert signals(services) == 3
    services.tasks.enqueue_many([{"name": "t"}] * 100)
    assert signals(services) == 64


def test_a_claim_that_empties_the_ready_set_clears_the_signals(services: Services) -> None:
    services.tasks.enqueue_many([{"name": "t"}] * 5)
    assert len(claim(services, 2)) == 2
    assert signals(services) == 5  # three still wait: their signals stay
    assert len(claim(services, 10)) == 3
    assert signals(services) == 0
    services.tasks.enqueue("t")  # new work signals again
    assert signals(services) == 1


def test_a_scheduled_task_signals_so_that_waiting_workers_look_at_its_due_time(
    services: Services,
) -> None:
    services.tasks.enqueue("t", delay_seconds=60)
    assert signals(services) == 1


def test_a_failure_that_will_be_retried_signals(services: Services) -> None:
    services.tasks.enqueue("t", max_attempts=2)
    [lease] = claim(services, 1)
    clear(services)
    services.queue.fail("default", lease.task_id, lease.lease_token, "boom")
    assert services.queue.task_hash("default", lease.task_id)["st"] == "retrying"  # type: ignore[index]
    assert signals(services) == 1


def test_a_report_under_a_concurrency_cap_signals_while_tasks_wait(services: Services) -> None:
    services.queue.configure("default", concurrency="1")
    services.tasks.enqueue_many([{"name": "t"}] * 2)
    [first] = claim(services, 5)  # the cap lets one through
    clear(services)
    services.queue.complete("default", first.task_id, first.lease_token, "null")
    assert signals(services) == 1  # the freed slot is work for a waiting worker
    [second] = claim(services, 5)
    clear(services)
    services.queue.complete("default", second.task_id, second.lease_token, "null")
    assert signals(services) == 0  # nothing waits: nobody to wake


def test_a_report_without_a_cap_does_not_signal(services: Services) -> None:
    services.tasks.enqueue_many([{"name": "t"}] * 2)
    [lease] = claim(services, 1)
    clear(services)
    services.queue.complete("default", lease.task_id, lease.lease_token, "null")
    assert signals(services) == 0
