"""Offline-first: a worker cut off from Redis (through a TCP proxy the test controls)
finishes what it holds, journals the outcomes and syncs them when the network returns,
even across a kill -9 and a restart with the same journal."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from chalicelib.core.settings import Settings
from chalicelib.service.deps import Services
from chalicelib.service.recorder import Recorder
from tests.helpers import wait_until
from tests.workers.conftest import SpawnWorker
from tests.workers.procs import Proxy


def proxied(settings: Settings, proxy: Proxy) -> str:
    url = urlsplit(settings.redis_url)
    return url._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


def journaled(tmp_path: Path) -> int:
    db = sqlite3.connect(tmp_path / "journal.db", timeout=5)
    try:
        return int(db.execute("SELECT count(*) FROM outcomes").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        db.close()


#: Handlers that leave a file when they start (tests/workers/marker_tasks.py).
MARKED = ("--tasks", "tests.workers.marker_tasks")


def enqueue_marked(services: Services, tmp_path: Path, n: int = 4) -> list[str]:
    body = {"dir": str(tmp_path), "seconds": 0.8}
    return [services.tasks.enqueue("test.marked_sleep", body)["id"] for _ in range(n)]


def held_by_the_worker(tmp_path: Path, n: int = 4) -> bool:
    """Every task started in the worker: its claim reply got through before the cut (a
    reply cut in flight leaves leases the worker never saw; they expire and retry)."""
    return len(list(tmp_path.glob("*.started"))) == n


def states(services: Services, ids: list[str]) -> list[str | None]:
    return [(services.queue.task_hash("default", t) or {}).get("st") for t in ids]


def assert_each_ran_once(services: Services, ids: list[str]) -> None:
    stream = services.keys.queue("default").events

    def caught_up() -> bool:  # ours recorded, and the worker's recorder thread done too
        Recorder(services.queue, services.store, "t").drain()
        return int(services.redis.xlen(stream)) == 0

    wait_until(caught_up, timeout_s=30, what="the record to catch up")
    for task_id in ids:
        task = services.tasks.get(task_id)
        history = Counter(e["event"] for e in task["history"])
        assert (task["status"], task["attempts"]) == ("succeeded", 1)
        assert history["claimed"] == 1 and history["succeeded"] == 1
        assert history["lease_expired"] == 0 and history["duplicate_result"] == 0


def test_offline_worker_finishes_held_tasks_and_syncs_on_reconnect(
    services: Services,
    settings: Settings,
    proxy: Proxy,
    spawn_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ids = enqueue_marked(services, tmp_path)
    spawn_worker(
        "--concurrency", "4", "--prefetch", "0", *MARKED, redis_url=proxied(settings, proxy)
    )
    wait_until(lambda: held_by_the_worker(tmp_path), timeout_s=15)
    proxy.cut()
    # The tasks outlive the connection: their outcomes wait in the journal.
    wait_until(lambda: journaled(tmp_path) == 4, timeout_s=10, what="4 journaled outcomes")
    extra = services.tasks.enqueue("dtq.noop")["id"]
    assert states(services, ids) == ["running"] * 4  # nothing reached Redis
    proxy.restore()
    wait_until(lambda: states(services, [*ids, extra]) == ["succeeded"] * 5, timeout_s=20)
    wait_until(lambda: journaled(tmp_path) == 0, timeout_s=5)
    assert_each_ran_once(services, ids)


def test_kill_9_while_offline_then_restart_syncs_without_rerunning(
    services: Services,
    settings: Settings,
    proxy: Proxy,
    spawn_worker: SpawnWorker,
    tmp_path: Path,
) -> None:
    ids = enqueue_marked(services, tmp_path)
    worker = spawn_worker(
        "--concurrency", "4", "--prefetch", "0", *MARKED, redis_url=proxied(settings, proxy)
    )
    wait_until(lambda: held_by_the_worker(tmp_path), timeout_s=15)
    proxy.cut()
    wait_until(lambda: journaled(tmp_path) == 4, timeout_s=10, what="4 journaled outcomes")
    worker.kill()
    worker.wait(10)
    proxy.restore()
    assert states(services, ids) == ["running"] * 4
    spawn_worker("--concurrency", "4", *MARKED, redis_url=proxied(settings, proxy))  # same journal
    wait_until(lambda: states(services, ids) == ["succeeded"] * 4, timeout_s=20)
    wait_until(lambda: journaled(tmp_path) == 0, timeout_s=5)
    assert_each_ran_once(services, ids)
