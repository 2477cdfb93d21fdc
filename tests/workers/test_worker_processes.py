"""Real ``dtq worker`` processes against real Redis and Postgres: draining, crashes,
pauses past the lease, graceful shutdown, timeouts and cancellation."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from chalicelib.service.deps import Services
from chalicelib.service.recorder import Recorder
from tests.helpers import wait_until
from tests.workers.conftest import SpawnWorker

#: Handlers that leave a file when they start (tests/workers/marker_tasks.py).
MARKED = ("--tasks", "tests.workers.marker_tasks")
FAST_BACKOFF = {"base_seconds": 0.01, "factor": 1.0, "max_seconds": 0.01, "jitter": False}


def live(services: Services, task_id: str) -> dict[str, str]:
    return services.queue.task_hash("default", task_id) or {}


def status(services: Services, task_id: str) -> str | None:
    return live(services, task_id).get("st")


def record_caught_up(services: Services) -> None:
    """Wait until every event reached Postgres: ours recorded, and the workers' own
    recorder threads done with theirs (entries are deleted once committed)."""
    stream = services.keys.queue("default").events

    def done() -> bool:
        Recorder(services.queue, services.store, "test").drain()
        return int(services.redis.xlen(stream)) == 0

    wait_until(done, timeout_s=30, what="the record to catch up")


def recorded(services: Services, task_id: str) -> dict[str, Any]:
    """The task as the API shows it, after the record caught up with Redis."""
    record_caught_up(services)
    return services.tasks.get(task_id)


def events(task: dict[str, Any]) -> list[str]:
    return [e["event"] for e in task["history"]]


def test_drains_5000_mixed_tasks_to_exactly_the_expected_states(
    services: Services, spawn_worker: SpawnWorker
) -> None:
    bodies: list[dict[str, Any]] = (
        [{"name": "dtq.echo", "payload": {"i": i}} for i in range(4000)]
        + [
            {
                "name": "dtq.fail",
                "payload": {"times": 1},
                "max_attempts": 3,
                "backoff": FAST_BACKOFF,
            }
            for _ in range(500)
        ]
        + [{"name": "dtq.fail", "max_attempts": 2, "backoff": FAST_BACKOFF} for _ in range(400)]
        + [{"name": "dtq.sleep", "payload": {"seconds": 0.02}} for _ in range(100)]
    )
    tasks = []
    for i in range(0, len(bodies), 1000):
        tasks += services.tasks.enqueue_many(bodies[i : i + 1000])
    spawn_worker("--concurrency", "16")

    def drained() -> bool:
        d = services.queue.depths(["default"])["default"]
        return (d["queued"], d["running"], d["retrying"], d["scheduled"], d["dead"]) == (
            0,
            0,
            0,
            0,
            400,
        )

    wait_until(drained, timeout_s=90, what="the queue to drain")
    record_caught_up(services)
    with services.store.connection() as conn:
        rows = conn.execute(
            "SELECT name, status, attempts, count(*) AS n FROM dtq_tasks "
            "GROUP BY name, status, attempts ORDER BY name, status, attempts"
        ).fetchall()
    got = {(r["name"], r["status"], r["attempts"]): r["n"] for r in rows}
    assert got == {
        ("dtq.echo", "succeeded", 1): 4000,
        ("dtq.fail", "succeeded", 2): 500,
        ("dtq.fail", "dead", 2): 400,
        ("dtq.sleep", "succeeded", 1): 100,
    }
    sample = services.tasks.get(tasks[1234]["id"])
    assert sample["result"] == {"i": 1234}
    dead = services.tasks.get(tasks[-150]["id"])
    assert "dtq.fail: attempt 2 fails on purpose" in dead["error"]
    assert services.queue.stats(["default"])["default"].get("duplicates", 0) == 0


def test_kill_9_mid_task_is_retried_after_the_lease_expires(
    services: Services, spawn_worker: SpawnWorker
) -> None:
    task = services.tasks.enqueue("dtq.sleep", {"seconds": 1.0})
    first = spawn_worker("--lease-seconds", "1.5", "--worker-id", "doomed")
    wait_until(lambda: live(services, task["id"]).get("wid") == "doomed", timeout_s=15)
    first.kill()
    first.wait(10)
    spawn_worker("--lease-seconds", "1.5", "--worker-id", "rescuer")
    wait_until(lambda: status(services, task["id"]) == "succeeded", timeout_s=20)
    final = recorded(services, task["id"])
    assert (final["status"], final["attempts"], final["worker_id"]) == ("succeeded", 2, "rescuer")
    assert "lease_expired" in events(final)
    assert Counter(events(final))["succeeded"] == 1


def test_a_paused_workers_late_report_is_refused_as_a_duplicate(
    services: Services, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    body = {"seconds": 0.5, "dir": str(tmp_path)}
    task = services.tasks.enqueue("test.marked_sleep", body)
    paused = spawn_worker("--lease-seconds", "1", "--worker-id", "paused", *MARKED)
    # Pause once the handler runs: a task claimed but not started when its lease is found
    # lost is dropped, not run (the test's former race: it paused right after the claim).
    wait_until(lambda: (tmp_path / f"{task['id']}.started").exists(), timeout_s=15)
    paused.send_signal(signal.SIGSTOP)
    # A journal of its own: the paused worker, alive, holds journal.db.
    spawn_worker("--lease-seconds", "1", "--worker-id", "other", *MARKED, journal="other.db")
    wait_until(lambda: status(services, task["id"]) == "succeeded", timeout_s=20)
    paused.send_signal(signal.SIGCONT)

    def duplicates() -> float:
        return services.queue.stats(["default"])["default"].get("duplicates", 0)

    wait_until(lambda: duplicates() == 1, timeout_s=20, what="the late report")
    final = recorded(services, task["id"])
    assert final["worker_id"] == "other" and final["status"] == "succeeded"
    history = Counter(events(final))
    assert history["succeeded"] == 1 and history["duplicate_result"] == 1
    assert paused.poll() is None  # the refusal is data, not a crash


def test_a_claimed_task_whose_lease_was_lost_before_it_started_is_not_run(
    services: Services, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    body = {"seconds": 0, "dir": str(tmp_path)}
    first = services.tasks.enqueue("test.marked_gate", {"dir": str(tmp_path)})
    second = services.tasks.enqueue("test.marked_sleep", body)
    # One slot and one prefetched task: the second waits in the worker behind the first.
    paused = spawn_worker(
        "--concurrency",
        "1",
        "--prefetch",
        "1",
        "--lease-seconds",
        "1",
        "--worker-id",
        "paused",
        *MARKED,
    )
    wait_until(lambda: (tmp_path / f"{first['id']}.started").exists(), timeout_s=15)
    wait_until(lambda: live(services, second["id"]).get("wid") == "paused", timeout_s=15)
    paused.send_signal(signal.SIGSTOP)
    spawn_worker(
        "--concurrency",
        "2",
        "--lease-seconds",
        "1",
        "--worker-id",
        "other",
        *MARKED,
        journal="other.db",
    )
    wait_until(lambda: status(services, second["id"]) == "succeeded", timeout_s=20)
    paused.send_signal(signal.SIGCONT)
    log = tmp_path / "worker-0.log"
    dropped = f"lease of task {second['id']} lost before it started; not running it"
    wait_until(lambda: dropped in log.read_text(), timeout_s=20, what="the drop")
    (tmp_path / f"{first['id']}.go").touch()  # the slot frees; the second is not in it
    wait_until(lambda: status(services, first["id"]) == "succeeded", timeout_s=20)
    paused.send_signal(signal.SIGTERM)
    assert paused.wait(15) == 0
    final = recorded(services, second["id"])
    assert (final["status"], final["worker_id"]) == ("succeeded", "other")
    history = Counter(events(final))
    assert history["succeeded"] == 1 and "duplicate_result" not in history
    stopped = log.read_text().rsplit("stopped: ", 1)[1]
    assert "'released': 0" in stopped and "'dropped': 1" in stopped


def test_graceful_shutdown_finishes_or_releases_held_tasks(
    services: Services, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    body = {"seconds": 0.6, "dir": str(tmp_path)}
    short = [services.tasks.enqueue("test.marked_sleep", body)["id"] for _ in range(5)]
    worker = spawn_worker("--concurrency", "3", "--prefetch", "2", "--grace-seconds", "10", *MARKED)
    wait_until(lambda: [status(services, t) for t in short].count("running") == 5, timeout_s=15)
    # Three handlers started (a claimed, unstarted task is given back at the signal).
    wait_until(lambda: len(list(tmp_path.glob("*.started"))) == 3, timeout_s=15)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    states = Counter(status(services, t) for t in short)
    # Three ran to the end within the grace period; the two prefetched were given back.
    assert states == {"succeeded": 3, "queued": 2}

    long = [services.tasks.enqueue("dtq.sleep", {"seconds": 1.5})["id"] for _ in range(2)]
    worker = spawn_worker(
        "--concurrency", "4", "--prefetch", "0", "--grace-seconds", "0.3", *MARKED
    )
    wait_until(lambda: all(status(services, t) == "running" for t in long), timeout_s=15)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert {status(services, t) for t in long} == {"queued"}
    assert {live(services, t)["att"] for t in long} == {"0"}  # a release is not an attempt

    spawn_worker("--concurrency", "8", *MARKED)
    wait_until(lambda: all(status(services, t) == "succeeded" for t in short + long), 20)
    for task_id in short + long:
        history = events(recorded(services, task_id))
        assert "failed" not in history and "lease_expired" not in history
    assert "released" in events(recorded(services, long[0]))


def test_a_second_signal_exits_at_once(
    services: Services, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    # A claimed task the handler has not started yet is released at the first signal; this
    # one leaves a marker when its handler runs, so the test knows it is past that point.
    task = services.tasks.enqueue("test.marked_sleep", {"seconds": 30, "dir": str(tmp_path)})
    worker = spawn_worker("--grace-seconds", "60", *MARKED)
    started = tmp_path / f"{task['id']}.started"
    wait_until(started.exists, timeout_s=15, what="the handler to start")
    worker.send_signal(signal.SIGTERM)
    # Signals sent back to back may be coalesced into one: wait for the first to land.
    log = tmp_path / "worker-0.log"
    wait_until(lambda: "finishing held tasks" in log.read_text(), timeout_s=5)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(5) != 0
    assert status(services, task["id"]) == "running"  # its lease expires; it is retried


def test_timeout_and_cancellation_of_a_running_sleep(
    services: Services, spawn_worker: SpawnWorker
) -> None:
    slow = services.tasks.enqueue("dtq.sleep", {"seconds": 60}, timeout_seconds=1, max_attempts=1)
    doomed = services.tasks.enqueue("dtq.sleep", {"seconds": 60})
    spawn_worker("--concurrency", "2", "--prefetch", "0", "--lease-seconds", "1.5")
    wait_until(lambda: status(services, doomed["id"]) == "running", timeout_s=15)
    started = time.monotonic()
    _, canceled_now = services.tasks.cancel(doomed["id"])
    assert canceled_now is False  # running: it ends at the worker's next lease extension
    wait_until(lambda: status(services, doomed["id"]) == "canceled", timeout_s=5)
    assert time.monotonic() - started < 2.0
    wait_until(lambda: status(services, slow["id"]) == "dead", timeout_s=10)
    assert "TimeoutError" in live(services, slow["id"])["err"]
    # Neither slot leaked: two new tasks run side by side at once.
    more = [services.tasks.enqueue("dtq.sleep", {"seconds": 0.3})["id"] for _ in range(2)]
    wait_until(lambda: all(status(services, t) == "running" for t in more), timeout_s=5)
    wait_until(lambda: all(status(services, t) == "succeeded" for t in more), timeout_s=5)
    final = recorded(services, doomed["id"])
    assert final["status"] == "canceled" and "duplicate_result" not in events(final)


def test_a_worker_freezes_its_start_up_heap(services: Services, spawn_worker: SpawnWorker) -> None:
    # Full collections then skip the modules and clients built at start-up (a 17 to 30 ms
    # pause each without it, at 9,200 tasks/s on the bench machine).
    task = services.tasks.enqueue("proc.gc_frozen")
    spawn_worker("--tasks", "tests.workers.proc_tasks")
    wait_until(lambda: status(services, task["id"]) == "succeeded", timeout_s=20)
    assert int(live(services, task["id"])["res"]) > 10_000
