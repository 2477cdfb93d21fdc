"""``dtq worker --record``: by default one child process records (and notifies); it never
outlives the worker, however the worker ends, and is replaced when it dies. Real worker
processes, real Redis and Postgres; no recorder runs in these tests, so whatever reaches
Postgres was written by the worker's own recorder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from chalicelib.service.deps import Services
from tests.helpers import children, wait_until
from tests.workers.conftest import SpawnWorker
from workers.children import start_time
from workers.recorder_child import READY_TIMEOUT_S, RecorderChild

#: Handlers that leave a file when they start (tests/workers/marker_tasks.py).
MARKED = ("--tasks", "tests.workers.marker_tasks")


def recorder_children(worker: subprocess.Popen[bytes]) -> list[int]:
    return [pid for pid, cmd in children(worker.pid).items() if "workers.cli record" in cmd]


def one_recorder(worker: subprocess.Popen[bytes]) -> tuple[int, str | None]:
    """The worker's only child, its recorder: (pid, kernel start time)."""
    wait_until(lambda: recorder_children(worker), timeout_s=10, what="the recorder child")
    assert list(children(worker.pid)) == recorder_children(worker)
    [pid] = recorder_children(worker)
    return pid, start_time(pid)


def statuses(services: Services) -> Counter[str]:
    """Task statuses in the Postgres record (each test starts from empty tables)."""
    with services.store.connection() as conn:
        rows = conn.execute("SELECT status, count(*) AS n FROM dtq_tasks GROUP BY status")
        return Counter({r["status"]: r["n"] for r in rows.fetchall()})


def wait_recorded(services: Services, expected: dict[str, int], timeout_s: float = 30) -> None:
    wait_until(
        lambda: statuses(services) == Counter(expected), timeout_s, f"the record to show {expected}"
    )


def unrecorded(services: Services) -> int:
    """Events still in the stream, read or not (an entry is deleted once committed)."""
    return int(services.redis.xlen(services.keys.queue("default").events))


def test_by_default_one_child_process_records_every_outcome(
    services: Services, spawn_worker: SpawnWorker
) -> None:
    services.tasks.enqueue_many(
        [{"name": "dtq.echo", "payload": {"i": i}} for i in range(400)]
        + [{"name": "dtq.fail", "max_attempts": 1} for _ in range(50)]
    )
    worker = spawn_worker("--concurrency", "8", "--worker-id", "w1")
    wait_recorded(services, {"succeeded": 400, "dead": 50})
    one_recorder(worker)
    assert unrecorded(services) == 0
    consumers = services.redis.xinfo_consumers(services.keys.queue("default").events, "recorder")
    # The name the worker gives its child (the one a recorder thread of it would have).
    assert [c["name"] for c in consumers] == [b"w1:rec"]


def test_sigterm_stops_the_recorder_child_before_the_worker_exits(
    services: Services, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    worker = spawn_worker()
    child, started = one_recorder(worker)
    services.tasks.enqueue("dtq.noop")
    wait_recorded(services, {"succeeded": 1})  # the child is past its start-up
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert start_time(child) != started  # already gone: the worker waited for it
    log = (tmp_path / "worker-0.log").read_text()
    # It finished on SIGTERM by itself (not killed after the grace period).
    assert f"recorder process {child} stopped (exit status 0)" in log
    assert "exited unexpectedly" not in log


def test_a_worker_killed_with_sigkill_takes_its_recorder_child_with_it(
    services: Services, spawn_worker: SpawnWorker
) -> None:
    worker = spawn_worker()
    child, started = one_recorder(worker)
    services.tasks.enqueue("dtq.noop")
    wait_recorded(services, {"succeeded": 1})
    worker.kill()
    worker.wait(10)
    wait_until(lambda: start_time(child) != started, timeout_s=5, what="the orphan to exit")


def test_the_second_signals_immediate_exit_takes_the_recorder_child_with_it(
    services: Services, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    task = services.tasks.enqueue("test.marked_sleep", {"seconds": 30, "dir": str(tmp_path)})
    worker = spawn_worker("--grace-seconds", "60", *MARKED)
    child, started = one_recorder(worker)
    wait_recorded(services, {"running": 1})
    started_marker = tmp_path / f"{task['id']}.started"
    wait_until(started_marker.exists, timeout_s=10, what="the handler to start")
    worker.send_signal(signal.SIGTERM)
    log = tmp_path / "worker-0.log"
    wait_until(lambda: "finishing held tasks" in log.read_text(), timeout_s=5)
    worker.send_signal(signal.SIGTERM)  # os._exit: no finally block runs
    assert worker.wait(5) != 0
    wait_until(lambda: start_time(child) != started, timeout_s=5, what="the orphan to exit")


def test_a_killed_recorder_child_is_replaced_and_its_batch_in_hand_recorded(
    services: Services, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    worker = spawn_worker("--concurrency", "8", "--worker-id", "w")
    first, _ = one_recorder(worker)
    services.tasks.enqueue("dtq.noop")
    wait_recorded(services, {"succeeded": 1})
    os.kill(first, signal.SIGSTOP)
    ids = [t["id"] for t in services.tasks.enqueue_many([{"name": "dtq.echo"}] * 300)]

    def done_in_redis() -> bool:
        return all(
            (services.queue.task_hash("default", i) or {}).get("st") == "succeeded" for i in ids
        )

    wait_until(done_in_redis, timeout_s=30, what="the tasks to run")
    # What the child holds when killed mid-batch: entries read under its consumer name,
    # not yet acknowledged. Only a recorder of that name reads them again at once (others
    # take them over after CLAIM_IDLE_MS, longer than this test waits).
    stream = services.keys.queue("default").events
    services.redis.xreadgroup("recorder", "w:rec", {stream: ">"}, count=100_000)
    assert services.redis.xpending(stream, "recorder")["pending"] == unrecorded(services) > 0
    os.kill(first, signal.SIGKILL)
    wait_until(
        lambda: recorder_children(worker) not in ([], [first]),
        timeout_s=15,
        what="a new recorder child",
    )
    wait_recorded(services, {"succeeded": 301}, timeout_s=15)
    wait_until(lambda: unrecorded(services) == 0, timeout_s=5, what="the stream to empty")
    assert services.redis.xpending(stream, "recorder")["pending"] == 0
    assert worker.poll() is None and len(children(worker.pid)) == 1
    log = (tmp_path / "worker-0.log").read_text()
    assert f"recorder process {first} exited unexpectedly (killed by SIGKILL)" in log


def test_record_thread_records_without_a_child_process(
    services: Services, spawn_worker: SpawnWorker
) -> None:
    services.tasks.enqueue_many([{"name": "dtq.echo"} for _ in range(50)])
    worker = spawn_worker("--record", "thread", "--concurrency", "4")
    wait_recorded(services, {"succeeded": 50})
    assert children(worker.pid) == {}


def test_no_record_runs_no_recorder(services: Services, spawn_worker: SpawnWorker) -> None:
    ids = [t["id"] for t in services.tasks.enqueue_many([{"name": "dtq.noop"}] * 20)]
    worker = spawn_worker("--no-record")

    def done_in_redis() -> bool:
        return all(
            (services.queue.task_hash("default", i) or {}).get("st") == "succeeded" for i in ids
        )

    wait_until(done_in_redis, timeout_s=15, what="the tasks to run")
    assert children(worker.pid) == {}
    # The outcomes wait in the stream for a recorder that is not there.
    assert unrecorded(services) > 0
    assert statuses(services)["succeeded"] == 0


#: Stands in for ``dtq record`` (which gets ``--ready-fd N`` appended): leaves a marker,
#: then says it is ready, then waits to be stopped; or, with "die", exits at once.
STAND_IN = """
import os, signal, sys
marker, mode, fd = sys.argv[1], sys.argv[2], int(sys.argv[-1])
if mode == "die":
    sys.exit(3)
open(marker, "w").close()
os.write(fd, b"1")
signal.sigwait({signal.SIGTERM})
"""


def test_start_returns_once_the_recorder_child_is_ready(tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    child = RecorderChild(consumer="w:rec")
    child.argv = [sys.executable, "-c", STAND_IN, str(marker), "ready"]
    child.start()  # launch() and wait: the child is recording when it returns
    try:
        assert marker.exists()  # start() returned after the child's start-up, not before
    finally:
        child.close()


def test_a_recorder_child_that_dies_at_start_up_does_not_hold_the_worker(
    tmp_path: Path,
) -> None:
    child = RecorderChild(consumer="w:rec")
    child.argv = [sys.executable, "-c", STAND_IN, str(tmp_path / "never"), "die"]
    started = time.monotonic()
    child.start()  # returns at the child's exit (end of file), not after READY_TIMEOUT_S
    child.close()
    assert time.monotonic() - started < READY_TIMEOUT_S
    assert not (tmp_path / "never").exists()
