"""``ctx.progress`` from handlers on slot threads (an in-process worker on the real Redis
and PostgreSQL), its argument checks, and its best effort: an unreachable server drops
the report and never fails or holds up the handler."""

from __future__ import annotations

import dataclasses
import itertools
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib.core.models import Lease
from chalicelib.core.settings import Settings
from chalicelib.queue.keys import Keys
from chalicelib.queue.scripts import Queue
from chalicelib.service.deps import Services, make_redis
from chalicelib.service.fleet import Fleet
from chalicelib.service.recorder import Recorder
from tests.helpers import free_port
from tests.workers.test_handlers import run_burst
from workers import registry
from workers.context import Job, TaskContext
from workers.http_transport import HttpTransport
from workers.offline import Journal
from workers.transport import RedisTransport, Transport
from workers.worker import Worker, WorkerConfig


def test_a_handler_reporting_50_times_quickly_shows_the_newest_and_few_events(
    services: Services, tmp_path: Path
) -> None:
    spans: list[float] = []

    def render(payload: dict[str, Any], ctx: TaskContext) -> str:
        start = time.monotonic()
        for i in range(1, 51):
            ctx.progress(i / 50, f"rendered {i} of 50 pages")
        spans.append(time.monotonic() - start)
        return "done"

    handlers = registry.load([])
    handlers.add("render", render)
    task = services.tasks.enqueue("render")
    run_burst(services, tmp_path, handlers)
    got = services.tasks.get(task["id"])
    assert got["status"] == "succeeded"
    assert got["progress"]["fraction"] == 1.0
    assert got["progress"]["message"] == "rendered 50 of 50 pages"
    Recorder(services.queue, services.store, "t").drain()
    got = services.tasks.get(task["id"])
    events = [e for e in got["history"] if e["event"] == "progress"]
    # One event when reporting starts, at most one per further second of reporting, and
    # the newest one, held back, written as the attempt ended.
    [span] = spans
    assert 1 <= len(events) <= 2 + int(span)
    assert events[-1]["progress"] == got["progress"]
    times = [datetime.fromisoformat(e["at"]) for e in events[:-1]]
    assert all((b - a).total_seconds() >= 0.999 for a, b in itertools.pairwise(times))


def test_bad_arguments_are_a_value_error_in_the_handler_naming_the_argument(
    services: Services, tmp_path: Path
) -> None:
    refusals: list[str] = []

    def careless(payload: dict[str, Any], ctx: TaskContext) -> None:
        for fraction, message in ((1.5, ""), (-0.1, ""), (float("nan"), ""), (0.5, "x" * 1001)):
            with pytest.raises(ValueError) as refused:
                ctx.progress(fraction, message)
            refusals.append(str(refused.value))
        with pytest.raises(ValueError) as refused:
            ctx.progress("half")  # type: ignore[arg-type]
        refusals.append(str(refused.value))

    handlers = registry.load([])
    handlers.add("careless", careless)
    task = services.tasks.enqueue("careless")
    run_burst(services, tmp_path, handlers)
    assert services.tasks.get(task["id"])["status"] == "succeeded"
    assert [r.split(" ")[1] for r in refusals] == [
        "fraction",
        "fraction",
        "fraction",
        "message",
        "fraction",
    ]
    assert all(r.startswith("ctx.progress: ") for r in refusals)
    assert services.tasks.get(task["id"])["progress"] is None


def _lease() -> Lease:
    return Lease(
        "0193a000-0000-7000-8000-000000000001", "default", "t", {}, 5, 1, 5, 300, 1, "tok", 0
    )


@pytest.mark.parametrize("mode", ["redis", "http"])
def test_an_unreachable_server_drops_the_report_without_failing_the_handler(
    services: Services, settings: Settings, tmp_path: Path, mode: str
) -> None:
    port = free_port()  # nothing listens there
    transport: Transport
    if mode == "redis":
        dead = make_redis(dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{port}/0"))
        queue = Queue(dead, Keys(settings.key_prefix))
        transport = RedisTransport(queue, Fleet(queue, services.store), services.tasks)
    else:
        transport = HttpTransport(f"http://127.0.0.1:{port}", "worker", "secret")
    worker = Worker(WorkerConfig(), transport, registry.load([]), Journal(str(tmp_path / "j.db")))
    ctx = TaskContext(worker, Job(_lease(), extend_at=0.0))
    start = time.monotonic()
    ctx.progress(0.5, "halfway")  # finds the server gone, as any call would: offline
    found_out = time.monotonic()
    ctx.progress(0.6, "further")  # offline: dropped at once
    assert time.monotonic() - found_out < 0.05
    assert found_out - start < 10  # the client's connect timeout and retries, no more
    assert worker.journal.count() == 0  # nothing of it is kept to send later
