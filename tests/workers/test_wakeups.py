"""An in-process worker (not burst mode) waiting for work: a claim that came back short
makes it wait for the queue's signal instead of claiming again on every finished task,
and every way work becomes claimable still reaches it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chalicelib.service.deps import Services
from chalicelib.service.fleet import Fleet
from tests.helpers import wait_until
from workers import registry
from workers.offline import Journal
from workers.transport import RedisTransport
from workers.worker import Worker, WorkerConfig


@contextmanager
def running(
    services: Services, tmp_path: Path, handlers: registry.Registry, concurrency: int = 4
) -> Iterator[Worker]:
    transport = RedisTransport(
        services.queue, Fleet(services.queue, services.store), services.tasks
    )
    worker = Worker(
        WorkerConfig(concurrency=concurrency, worker_id="w-wake", grace_s=5),
        transport,
        handlers,
        Journal(str(tmp_path / "j.db")),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(10)
    assert not thread.is_alive()


def status(services: Services, task_id: str) -> str:
    return (services.queue.task_hash("default", task_id) or {}).get("st", "")


def test_a_dry_worker_claims_only_when_woken(services: Services, tmp_path: Path) -> None:
    gate = threading.Event()
    handlers = registry.load([])
    handlers.add("hold", lambda payload: gate.wait(10))
    ids = [t["id"] for t in services.tasks.enqueue_many([{"name": "hold"}] * 2)]
    with running(services, tmp_path, handlers) as worker:
        wait_until(lambda: all(status(services, i) == "running" for i in ids), what="both run")
        # Claims not preceded by a wake-up (the waker's or a reconnection's) so far:
        unprompted = worker.claims - worker._woken
        gate.set()
        wait_until(lambda: all(status(services, i) == "succeeded" for i in ids), what="done")
        # Two tasks finished and were reported; the queue had nothing more, and the worker
        # knew it: no claim without a wake-up (each used to cost a claim of nothing).
        assert worker.claims - worker._woken <= unprompted
        # New work still wakes it.
        late = services.tasks.enqueue("hold")
        wait_until(lambda: status(services, late["id"]) == "succeeded", what="late task")


def test_a_capped_queue_drains_through_a_waiting_worker(services: Services, tmp_path: Path) -> None:
    services.queue.configure("default", concurrency="1")
    seen: list[Any] = []
    handlers = registry.load([])
    handlers.add("one", lambda payload: seen.append(payload["i"]))
    ids = [
        t["id"]
        for t in services.tasks.enqueue_many(
            [{"name": "one", "payload": {"i": i}} for i in range(5)]
        )
    ]
    with running(services, tmp_path, handlers):
        wait_until(lambda: all(status(services, i) == "succeeded" for i in ids), what="drained")
    assert seen == [0, 1, 2, 3, 4]  # one at a time, in order


def test_a_retry_due_at_once_reaches_a_waiting_worker(services: Services, tmp_path: Path) -> None:
    attempts: list[int] = []

    def flaky(payload: dict[str, Any], ctx: Any) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first time unlucky")
        return "ok"

    handlers = registry.load([])
    handlers.add("flaky", flaky)
    task = services.tasks.enqueue(
        "flaky", backoff={"base_seconds": 0, "factor": 1, "max_seconds": 0, "jitter": False}
    )
    with running(services, tmp_path, handlers):
        wait_until(lambda: status(services, task["id"]) == "succeeded", what="retried")
    assert attempts == [1, 2]
