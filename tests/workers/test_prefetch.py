"""How much a worker holds beyond its free slots when ``--prefetch`` is not given: about
what its slots finish in ``PREFETCH_WAIT_S`` at the tasks' recent run time, so short
tasks come many per claim and long ones no more than one extra per slot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from chalicelib.service.deps import Services
from chalicelib.service.fleet import Fleet
from workers import registry
from workers.offline import Journal
from workers.transport import RedisTransport
from workers.worker import PREFETCH_WAIT_S, Worker, WorkerConfig


def one_slot_worker(
    services: Services,
    tmp_path: Path,
    handlers: registry.Registry,
    name: str,
    *,
    prefetch: int | None = None,
) -> Worker:
    transport = RedisTransport(
        services.queue, Fleet(services.queue, services.store), services.tasks
    )
    config = WorkerConfig(concurrency=1, prefetch=prefetch, worker_id=f"w-{name}")
    return Worker(config, transport, handlers, Journal(str(tmp_path / f"{name}.db")))


def burst(
    services: Services,
    tmp_path: Path,
    handlers: registry.Registry,
    name: str,
    *,
    prefetch: int | None = None,
) -> Worker:
    worker = one_slot_worker(services, tmp_path, handlers, name, prefetch=prefetch)
    worker.run(burst=True)
    return worker


def test_the_capacity_follows_the_run_time_between_its_bounds() -> None:
    auto = WorkerConfig(concurrency=4)
    assert auto.capacity(PREFETCH_WAIT_S) == 8  # the start: one extra per slot, as before
    assert auto.capacity(PREFETCH_WAIT_S / 2) == 4 + 8
    assert auto.capacity(1e-9) == 4 + 16  # short tasks: at most max(4 * 4, 16) extra
    assert auto.capacity(60.0) == 8  # long tasks: never less than one extra per slot
    assert WorkerConfig(concurrency=32).capacity(1e-9) == 32 + 128
    assert WorkerConfig(concurrency=4, prefetch=0).capacity(1e-9) == 4  # given: as given


def test_short_tasks_come_many_per_claim(services: Services, tmp_path: Path) -> None:
    handlers = registry.load([])
    handlers.add("quick", lambda payload: None)
    services.tasks.enqueue_many([{"name": "quick"}] * 200)
    auto = burst(services, tmp_path, handlers, "auto")
    assert auto.counts["succeeded"] == 200
    # One slot and one prefetched task (prefetch 1, the old default) need a claim per one
    # or two tasks; once the run time is known the claims carry up to 17.
    assert auto.claims <= 40, auto.claims

    services.tasks.enqueue_many([{"name": "quick"}] * 200)
    fixed = burst(services, tmp_path, handlers, "fixed", prefetch=1)
    assert fixed.counts["succeeded"] == 200
    assert fixed.claims >= 100, fixed.claims


def test_long_tasks_are_not_prefetched_beyond_one_per_slot(
    services: Services, tmp_path: Path
) -> None:
    held: list[int] = []
    worker: list[Worker] = []

    def slow(payload: dict[str, Any]) -> None:
        # Work that takes 4 * PREFETCH_WAIT_S: worth no prefetch beyond one per slot.
        time.sleep(4 * PREFETCH_WAIT_S)
        if worker:
            held.append(len(worker[0]._held))

    handlers = registry.load([])
    handlers.add("slow", slow)
    services.tasks.enqueue_many([{"name": "slow"}] * 8)
    w = one_slot_worker(services, tmp_path, handlers, "slow")
    worker.append(w)
    w.run(burst=True)
    assert w.counts["succeeded"] == 8
    assert len(held) == 8 and max(held) <= 2, held  # the running task and one prefetched
