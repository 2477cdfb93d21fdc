"""Handlers in an in-process worker (burst mode): results, retries with a chosen delay,
unknown names, follow-up tasks and the lock helper through the context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chalicelib.core.errors import Retry
from chalicelib.queue.locks import LockScripts
from chalicelib.service.deps import Services
from chalicelib.service.fleet import Fleet
from workers import registry
from workers.context import TaskContext
from workers.offline import Journal
from workers.transport import RedisTransport
from workers.worker import Worker, WorkerConfig


def run_burst(
    services: Services, tmp_path: Path, handlers: registry.Registry, concurrency: int = 4
) -> Worker:
    transport = RedisTransport(
        services.queue, Fleet(services.queue, services.store), services.tasks
    )
    worker = Worker(
        WorkerConfig(concurrency=concurrency, worker_id="w-test"),
        transport,
        handlers,
        Journal(str(tmp_path / "j.db")),
        locks=(LockScripts(services.redis), services.keys),
    )
    worker.run(burst=True)
    return worker


def live(services: Services, task_id: str) -> dict[str, str]:
    return services.queue.task_hash("default", task_id) or {}


def test_handlers_results_retries_unknown_names_children_and_locks(
    services: Services, tmp_path: Path
) -> None:
    seen_fences: list[int] = []

    def parent(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        key = ctx.enqueue("child", {"of": ctx.task_id})
        with ctx.lock("invoice:1", ttl_seconds=5) as fence:
            seen_fences.append(fence)
        return {"child_key": key, "attempt": ctx.attempt}

    def flaky(payload: dict[str, Any], ctx: TaskContext) -> str:
        if ctx.attempt == 1:
            raise Retry(delay_seconds=0.0)
        return "second time lucky"

    handlers = registry.load([])
    handlers.add("parent", parent)
    handlers.add("flaky", flaky)
    handlers.add("child", lambda payload: payload["of"])  # one-argument handlers work too
    p = services.tasks.enqueue("parent")
    f = services.tasks.enqueue("flaky")
    u = services.tasks.enqueue("nobody.handles.this", max_attempts=1)
    worker = run_burst(services, tmp_path, handlers)

    assert live(services, p["id"])["res"] == f'{{"child_key":"{p["id"]}:1","attempt":1}}'
    assert (live(services, f["id"])["st"], live(services, f["id"])["att"]) == ("succeeded", "2")
    assert live(services, u["id"])["st"] == "dead"
    assert "no handler registered" in live(services, u["id"])["err"]
    [child] = services.tasks.list(name="child")[0]
    assert child["idempotency_key"] == f"{p['id']}:1"
    if live(services, child["id"]).get("st") != "succeeded":  # pushed after its parent ended
        run_burst(services, tmp_path, handlers)
    assert live(services, child["id"])["res"] == f'"{p["id"]}"'
    assert seen_fences == [1]
    assert worker.counts["succeeded"] >= 2 and worker.journal.count() == 0
