"""A worker never runs two copies of one task id at once.

When Redis forgets a lease (its AOF lost the last second, or it was rebuilt), the task
can come back to the very worker that still runs it. The new lease then waits behind the
running copy, and that copy's outcome answers it: the handler runs once.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from chalicelib.service.deps import Services
from chalicelib.service.fleet import Fleet
from tests.helpers import wait_until
from workers import registry
from workers.offline import Journal
from workers.transport import RedisTransport
from workers.worker import Worker, WorkerConfig


def _forget_lease(services: Services, task_id: str) -> None:
    """Make Redis look as if the claim never happened (a lost AOF tail): the task is
    queued again with no lease, and idle workers are woken."""
    qk = services.keys.queue("default")
    r = services.redis
    r.hset(qk.task(task_id), "st", "queued")
    r.hdel(qk.task(task_id), "tok", "wid", "lx")
    r.zrem(qk.running, task_id)
    r.zadd(qk.ready, {task_id: 1})
    r.lpush(qk.signal, 1)


def test_a_task_leased_again_to_the_worker_running_it_waits_and_runs_once(
    services: Services, tmp_path: Path
) -> None:
    release = threading.Event()
    runs: list[int] = []

    def blocking(payload: dict[str, Any], ctx: Any) -> str:
        runs.append(ctx.fence)
        release.wait(30)
        return "done"

    handlers = registry.load([])
    handlers.add("blocking", blocking)
    transport = RedisTransport(
        services.queue, Fleet(services.queue, services.store), services.tasks
    )
    worker = Worker(
        WorkerConfig(concurrency=2, worker_id="w-once"),
        transport,
        handlers,
        Journal(str(tmp_path / "j.db")),
    )
    task = services.tasks.enqueue("blocking", {})
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(runs) == 1, what="the first copy runs")
        _forget_lease(services, task["id"])
        wait_until(lambda: task["id"] in worker._behind, what="the task is leased again")
        live = services.queue.task_hash("default", task["id"])
        assert live is not None and live["st"] == "running" and live["wid"] == "w-once"
        assert len(runs) == 1  # the new lease waits behind the running copy

        release.set()
        wait_until(
            lambda: (
                (services.queue.task_hash("default", task["id"]) or {}).get("st") == "succeeded"
            ),
            what="the task succeeds",
        )
        assert runs == [1]  # the handler ran once; its outcome answered the new lease
        assert worker.counts["succeeded"] == 1 and worker.counts["rejected"] == 0
        assert not worker._behind and not worker._held
    finally:
        release.set()
        worker.stop()
        thread.join(10)
