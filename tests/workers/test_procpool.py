"""``dtq worker --pool process``: real worker processes whose handlers run in child
processes (tests/workers/proc_tasks.py), against real Redis and Postgres."""

from __future__ import annotations

import json
import signal
from datetime import datetime
from pathlib import Path

from chalicelib.service.deps import Services
from tests.helpers import alive, children, wait_until
from tests.workers.conftest import SpawnWorker
from tests.workers.proc_tasks import count_primes
from tests.workers.test_worker_processes import recorded

POOL = ("--pool", "process", "--tasks", "tests.workers.proc_tasks")


def live(services: Services, task_id: str) -> dict[str, str]:
    return services.queue.task_hash("default", task_id) or {}


def status(services: Services, task_id: str) -> str | None:
    return live(services, task_id).get("st")


def test_cpu_bound_handlers_run_in_two_child_processes(
    services: Services, spawn_worker: SpawnWorker
) -> None:
    sizes = [20_000 + 1_000 * i for i in range(12)]
    tasks = [services.tasks.enqueue("proc.primes", {"below": n})["id"] for n in sizes]
    worker = spawn_worker(*POOL, "--concurrency", "2")
    wait_until(lambda: all(status(services, t) == "succeeded" for t in tasks), timeout_s=25)
    results = [json.loads(live(services, t)["res"]) for t in tasks]
    assert [r["primes"] for r in results] == [count_primes(n) for n in sizes]
    assert [r["task_id"] for r in results] == tasks
    pids = {r["pid"] for r in results}
    assert len(pids) == 2 and worker.pid not in pids
    assert pids == children(worker.pid).keys() & pids  # the worker's own children did the work


def test_an_exception_a_retry_and_context_calls_behave_as_with_threads(
    services: Services, spawn_worker: SpawnWorker
) -> None:
    bad = services.tasks.enqueue("proc.fail", {"n": 42}, max_attempts=1)["id"]
    again = services.tasks.enqueue("proc.retry", max_attempts=3)["id"]
    parent = services.tasks.enqueue("proc.parent")["id"]
    spawn_worker(*POOL, "--concurrency", "2")
    wait_until(lambda: status(services, bad) == "dead", timeout_s=20)
    wait_until(lambda: status(services, again) == "succeeded", timeout_s=20)
    wait_until(lambda: status(services, parent) == "succeeded", timeout_s=20)
    res = json.loads(live(services, parent)["res"])
    assert res["key"] == f"{parent}:1" and res["extended"] is True
    assert "ctx.lock is not available with --pool process" in res["lock"]
    [child] = services.tasks.list(name="proc.primes")[0]
    assert child["idempotency_key"] == f"{parent}:1"
    wait_until(lambda: status(services, child["id"]) == "succeeded", timeout_s=20)
    assert json.loads(live(services, child["id"])["res"])["primes"] == 25
    err = live(services, bad)["err"]
    assert err.startswith("ValueError: bad input 42\nTraceback")
    assert "proc_tasks.py" in err and 'raise ValueError(f"bad input' in err
    assert json.loads(live(services, again)["res"]) == {"attempt": 2}
    assert live(services, again)["att"] == "2"
    history = recorded(services, again)["history"]
    [failed_at] = [e["at"] for e in history if e["event"] == "failed"]
    [claimed_at] = [e["at"] for e in history if e["event"] == "claimed" and e["attempt"] == 2]
    gap = datetime.fromisoformat(claimed_at) - datetime.fromisoformat(failed_at)
    assert gap.total_seconds() >= 0.49  # the handler's chosen delay


def test_a_timed_out_attempt_kills_and_replaces_its_child(
    services: Services, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    pidfile = tmp_path / "spin.pid"
    spin = services.tasks.enqueue(
        "proc.spin", {"pidfile": str(pidfile)}, timeout_seconds=1, max_attempts=1
    )["id"]
    worker = spawn_worker(*POOL, "--concurrency", "2", "--prefetch", "0", "--lease-seconds", "1.5")
    wait_until(pidfile.exists, timeout_s=15, what="the spinning handler to start")
    wait_until(lambda: pidfile.read_text(), timeout_s=5)
    spinner = int(pidfile.read_text())
    # The other slot keeps working while one spins.
    other = services.tasks.enqueue("proc.primes", {"below": 5_000})["id"]
    wait_until(lambda: status(services, other) == "succeeded", timeout_s=10)
    wait_until(lambda: status(services, spin) == "dead", timeout_s=10)
    assert live(services, spin)["err"].startswith("TimeoutError")
    wait_until(lambda: not alive(spinner), timeout_s=10, what="the spinning child to die")
    # Both slots work again (one through a fresh child): two sleeps run side by side.
    more = [services.tasks.enqueue("proc.sleep", {"seconds": 0.5})["id"] for _ in range(2)]
    wait_until(lambda: all(status(services, t) == "running" for t in more), timeout_s=10)
    wait_until(lambda: all(status(services, t) == "succeeded" for t in more), timeout_s=10)
    pids = {json.loads(live(services, t)["res"])["pid"] for t in more}
    assert len(pids) == 2 and spinner not in pids
    # A cancel reaches the handler in its child (through the slot's cancel flag).
    doomed = services.tasks.enqueue("proc.sleep", {"seconds": 60})["id"]
    wait_until(lambda: status(services, doomed) == "running", timeout_s=10)
    services.tasks.cancel(doomed)
    wait_until(lambda: status(services, doomed) == "canceled", timeout_s=5)
    assert worker.poll() is None


def test_sigterm_with_tasks_in_flight_loses_none_and_leaves_no_child(
    services: Services, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    body = {"seconds": 1.0, "dir": str(tmp_path)}
    tasks = [services.tasks.enqueue("proc.sleep", body)["id"] for _ in range(3)]
    worker = spawn_worker(*POOL, "--concurrency", "2", "--prefetch", "1", "--grace-seconds", "10")
    wait_until(lambda: [status(services, t) for t in tasks].count("running") == 3, timeout_s=15)
    # Two handlers started in their children (a claimed, unstarted task is given back).
    wait_until(lambda: len(list(tmp_path.glob("*.started"))) == 2, timeout_s=15)
    kids = children(worker.pid)
    assert len(kids) >= 2  # the slots' children (and multiprocessing's resource tracker)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    states = sorted(str(status(services, t)) for t in tasks)
    # The two in the children finished within the grace period; the prefetched one was
    # given back, not failed.
    assert states == ["queued", "succeeded", "succeeded"]
    assert all(live(services, t)["att"] in ("0", "1") for t in tasks)
    wait_until(lambda: not any(alive(k) for k in kids), timeout_s=5, what="no child left")


def test_progress_from_a_child_process_reaches_the_task_and_its_history(
    services: Services, spawn_worker: SpawnWorker
) -> None:
    task_id = services.tasks.enqueue("proc.progress", {"steps": 50})["id"]
    spawn_worker(*POOL, "--concurrency", "1")
    wait_until(lambda: status(services, task_id) == "succeeded", timeout_s=20)
    assert "ctx.progress: fraction must be a number from 0 to 1" in live(services, task_id)["res"]
    task = recorded(services, task_id)
    assert task["progress"]["fraction"] == 1.0
    assert task["progress"]["message"] == "step 50 of 50"
    events = [e for e in task["history"] if e["event"] == "progress"]
    assert events and events[-1]["progress"] == task["progress"]
    started = datetime.fromisoformat(task["started_at"])
    finished = datetime.fromisoformat(task["finished_at"])
    # At most one event per second of running, plus the newest written at the end.
    assert len(events) <= 2 + int((finished - started).total_seconds())
