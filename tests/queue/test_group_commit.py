"""Group commit of concurrent single creates, against the real store and queue."""

from __future__ import annotations

import threading

import pytest

from chalicelib.core.errors import Conflict, Unavailable
from chalicelib.core.models import NewTask
from chalicelib.core.taskspec import parse_task
from chalicelib.service.deps import Services
from chalicelib.service.groupcommit import GroupCommit
from tests.helpers import wait_until


def new_task(services: Services, i: int) -> NewTask:
    spec = parse_task({"name": "t", "payload": {"i": i}}, max_payload_bytes=1000)
    return services.tasks._new_task(spec, services.queue.clock.now_ms(), None)


def test_callers_arriving_during_a_commit_share_the_next_one(services: Services) -> None:
    batches: list[int] = []
    first_may_commit = threading.Event()

    def commit(tasks: list[NewTask]) -> None:
        if not batches:
            first_may_commit.wait(10)  # hold the first leader until the others wait
        batches.append(len(tasks))
        services.store.insert_tasks(tasks)

    group = GroupCommit(commit, services.queue.enqueue_many)
    tasks = [new_task(services, i) for i in range(8)]
    threads = [threading.Thread(target=group.submit, args=([t],)) for t in tasks]
    threads[0].start()
    wait_until(lambda: batches == [] and group._leading, what="a leader")
    for t in threads[1:]:
        t.start()
    wait_until(lambda: len(group._waiting) == 7, what="seven callers waiting")
    first_may_commit.set()
    for t in threads:
        t.join(10)
    assert batches == [1, 7]  # the lone first caller, then everyone who came meanwhile
    for t in tasks:
        assert services.store.get_task(t.id) is not None
        assert services.queue.task_hash("default", t.id) is not None


def test_a_failed_commit_fails_its_callers_only(services: Services) -> None:
    calls = 0

    def commit(tasks: list[NewTask]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Unavailable("postgres is down")
        services.store.insert_tasks(tasks)

    group = GroupCommit(commit, services.queue.enqueue_many)
    first, second = new_task(services, 1), new_task(services, 2)
    with pytest.raises(Unavailable):
        group.submit([first])
    group.submit([second])  # the group is not stuck after a failure
    assert services.store.get_task(first.id) is None
    assert services.store.get_task(second.id) is not None


def test_a_copied_batch_is_one_statement_all_or_nothing(services: Services) -> None:
    # A batch without idempotency keys is one COPY in autocommit mode, with no explicit
    # transaction: a row that fails (here a repeated id) must still take the batch with it.
    first, second, third = (new_task(services, i) for i in range(3))
    repeated = third._replace(id=first.id)
    with pytest.raises(Conflict):
        services.store.insert_tasks([first, second, third, repeated])
    for t in (first, second, third):
        assert services.store.get_task(t.id) is None
    services.store.insert_tasks([first, second, third])
    assert all(services.store.get_task(t.id) is not None for t in (first, second, third))
