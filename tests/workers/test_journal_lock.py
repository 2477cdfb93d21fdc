"""One journal per worker process: a journal is locked for its worker's life, workers
started from one folder take the first free file of a numbered series, an explicit
``--offline-db`` held by another worker is refused, and rows are reported as they were
written (their lease token and worker) by the next owner of their file only."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from chalicelib.core.models import Outcome
from chalicelib.core.settings import Settings
from chalicelib.service.deps import Services
from chalicelib.service.fleet import Fleet
from chalicelib.service.recorder import Recorder
from tests.helpers import wait_until
from tests.workers.conftest import SpawnWorker
from tests.workers.procs import DTQ, Proxy, worker_env
from tests.workers.test_offline import (
    MARKED,
    assert_each_ran_once,
    enqueue_marked,
    held_by_the_worker,
    proxied,
    states,
)
from tests.workers.test_transport_contract import transport  # noqa: F401 (a fixture)
from workers import registry
from workers.offline import Journal, JournalBusy
from workers.transport import RedisTransport, Transport
from workers.worker import Worker, WorkerConfig

HOST = socket.gethostname()
#: A retry due almost at once (an expired lease counts as a failed attempt).
FAST_BACKOFF = {"base_seconds": 0.01, "factor": 1.0, "max_seconds": 0.01, "jitter": False}
StartIn = Callable[..., subprocess.Popen[bytes]]


def journal_file(folder: Path, n: int = 1) -> Path:
    """The n-th default journal of a worker started in ``folder``."""
    return folder / ".dtq" / (f"journal-{HOST}.db" if n == 1 else f"journal-{HOST}-{n}.db")


def holder(db: Path) -> int | None:
    """The pid holding the lock of the journal ``db``, from the kernel's table of locks
    (looking, not trying: a test taking the lock even briefly could push a starting
    worker to the next file)."""
    try:
        inode = os.stat(f"{db}.lock").st_ino
    except FileNotFoundError:
        return None
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        if fields[1] == "FLOCK" and int(fields[5].rsplit(":", 1)[1]) == inode:
            return int(fields[4])
    return None


def journaled_rows(db: Path) -> list[tuple[str, str]]:
    """(task id, worker id) of every outcome in the journal ``db``."""
    conn = sqlite3.connect(db, timeout=5)
    try:
        return [(r[0], r[1]) for r in conn.execute("SELECT task_id, worker_id FROM outcomes")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        conn.close()


def recorded_events(services: Services, queue: str = "default") -> None:
    """Wait until every event of ``queue`` reached PostgreSQL (entries are deleted once
    committed, whichever recorder took them)."""
    stream = services.keys.queue(queue).events

    def done() -> bool:
        Recorder(services.queue, services.store, "test").drain()
        return int(services.redis.xlen(stream)) == 0

    wait_until(done, timeout_s=30, what="the record to catch up")


def registered(services: Services, worker_id: str) -> bool:
    return services.redis.zscore(services.keys.workers, worker_id) is not None


def history(services: Services, task_id: str) -> list[dict[str, Any]]:
    return list(services.tasks.get(task_id)["history"])


@pytest.fixture
def start_in(settings: Settings) -> Iterator[StartIn]:
    """Start ``dtq worker`` in a folder with no ``--offline-db``, its output in
    ``<folder>/<name>.log``; every one still running is killed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        folder: Path, name: str, *args: str, redis_url: str | None = None
    ) -> subprocess.Popen[bytes]:
        folder.mkdir(exist_ok=True)
        with open(folder / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                [DTQ, "worker", "--worker-id", name, *args],
                env=worker_env(settings, redis_url),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=folder,
            )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


# -- the journal file and its lock (in process) --------------------------------------------


def test_a_journal_is_refused_while_open_and_free_once_closed(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    first = Journal(path)
    with pytest.raises(JournalBusy) as refused:
        Journal(path)
    assert refused.value.holder == os.getpid() and path in refused.value.message
    first.close()
    Journal(path).close()


def test_the_default_is_the_first_free_journal_of_a_numbered_series(tmp_path: Path) -> None:
    folder = str(tmp_path / ".dtq")
    one, two, three = (Journal.first_free(folder, "h") for _ in range(3))
    assert [Path(j.path).name for j in (one, two, three)] == [
        "journal-h.db",
        "journal-h-2.db",
        "journal-h-3.db",
    ]
    two.add([Outcome("default", "t1", "tok1", True)], "w-two")
    two.close()
    # A worker started after the holder of -2 died takes that file, and its rows.
    again = Journal.first_free(folder, "h")
    assert Path(again.path).name == "journal-h-2.db" and again.owes("t1")
    for j in (one, three, again):
        j.close()


def test_rows_keep_the_worker_that_wrote_them(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    journal = Journal(path)
    journal.add([Outcome("default", "t1", "tok1", True)], "w-old")
    journal.add(
        [Outcome("default", "t2", "tok2", False, error="boom", worker_id="w-other")], "w-old"
    )
    journal.close()
    again = Journal(path)
    assert [(r.task_id, r.token, r.worker_id) for r in again.pending()] == [
        ("t1", "tok1", "w-old"),
        ("t2", "tok2", "w-other"),
    ]
    assert again.outcome("t2") == Outcome(
        "default", "t2", "tok2", False, error="boom", worker_id="w-other"
    )
    assert again.outcome("t3") is None
    again.close()


def test_a_journal_written_before_rows_kept_their_worker_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE outcomes (
            task_id TEXT PRIMARY KEY, queue TEXT NOT NULL, token TEXT NOT NULL,
            succeeded INTEGER NOT NULL, result TEXT NOT NULL, error TEXT NOT NULL,
            retry_delay_ms INTEGER, started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL);
        INSERT INTO outcomes VALUES ('t1', 'default', 'tok1', 1, 'null', '', NULL, 1, 2);
    """)
    old.close()
    journal = Journal(str(path))
    # Its writer is unknown: it goes under the worker that syncs it, as it always did.
    assert journal.pending() == [
        Outcome("default", "t1", "tok1", True, started_ms=1, finished_ms=2)
    ]
    journal.add([Outcome("default", "t2", "tok2", True, finished_ms=3)], "w-new")
    assert [r.worker_id for r in journal.pending()] == ["", "w-new"]
    journal.close()


# -- what a sync sends ------------------------------------------------------------------


def test_an_outcome_is_reported_under_the_worker_that_journaled_it(
    transport: Transport,  # noqa: F811 (the fixture)
    services: Services,
) -> None:
    services.tasks.enqueue("t")
    services.tasks.enqueue("t")
    [old] = transport.claim("w-old", ["default"], 1, 30_000)[0]
    [new] = transport.claim("w-new", ["default"], 1, 30_000)[0]
    # w-old's report reached the server, but w-old died before settling its journal row;
    # w-new, the next owner of that journal, sends the row with its own outcome.
    services.queue.complete(old.queue, old.task_id, old.lease_token, "1", worker_id="w-old")
    rows = [
        Outcome(old.queue, old.task_id, old.lease_token, True, "1", worker_id="w-old"),
        Outcome(new.queue, new.task_id, new.lease_token, True, "2"),
    ]
    body = {"name": "child", "idempotency_key": "k1"}
    res = transport.sync("w-new", rows, [body])
    assert res.accepted == [new.task_id] and res.created == ["k1"]
    assert res.rejected == [(old.task_id, "already_finished")]
    recorded_events(services)
    [dup] = [e for e in history(services, old.task_id) if e["event"] == "duplicate_result"]
    assert dup["worker_id"] == "w-old"  # not w-new, which never ran it
    assert (services.queue.task_hash("default", new.task_id) or {})["st"] == "succeeded"


# -- an earlier lease's outcome still journaled when the task comes back -------------------


def in_process_worker(
    services: Services,
    tmp_path: Path,
    handlers: registry.Registry,
    worker_id: str,
    *,
    prefetch: int | None = None,
) -> Worker:
    redis = RedisTransport(services.queue, Fleet(services.queue, services.store), services.tasks)
    config = WorkerConfig(concurrency=1, prefetch=prefetch, worker_id=worker_id)
    return Worker(config, redis, handlers, Journal(str(tmp_path / f"{worker_id}.db")))


@contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    thread = threading.Thread(target=worker.run, name="test-worker")
    thread.start()
    try:
        # Its first claim comes after the start-up sync of its journal.
        wait_until(lambda: worker.claims > 0, timeout_s=15, what="the first claim")
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        worker.journal.close()


def test_a_retry_runs_although_its_failed_attempt_is_still_journaled(
    services: Services, tmp_path: Path
) -> None:
    ran: list[int] = []

    def flaky(payload: dict[str, Any], ctx: Any) -> dict[str, int]:
        ran.append(ctx.attempt)
        return {"attempt": ctx.attempt}

    handlers = registry.load([])
    handlers.add("flaky", flaky)
    task = services.tasks.enqueue("flaky", max_attempts=3)
    first = services.queue.claim(["default"], "w", 1, 30_000).leases[0]
    with running(in_process_worker(services, tmp_path, handlers, "w")) as worker:
        # Attempt 1 failed here: journaled, and reported (the reply lost on its way back,
        # so the row stays) — the retry it causes comes back to this worker.
        worker.journal.add(
            [Outcome("default", task["id"], first.lease_token, False, error="attempt 1 failed")],
            "w",
        )
        assert services.queue.fail(
            "default",
            task["id"],
            first.lease_token,
            "attempt 1 failed",
            retry_delay_ms=0,
            worker_id="w",
        )
        wait_until(
            lambda: (
                (services.queue.task_hash("default", task["id"]) or {}).get("st") == "succeeded"
            ),
            timeout_s=15,
            what="the retry",
        )
        assert worker.journal.count() == 0
    # Attempt 2 ran; attempt 1's failure did not answer it (an attempt that never ran).
    assert ran == [2]
    recorded_events(services)
    final = services.tasks.get(task["id"])
    assert (final["attempts"], final["result"]) == (2, {"attempt": 2})
    assert Counter(e["event"] for e in final["history"])["failed"] == 1


def test_a_late_success_still_journaled_ends_the_task_without_running_it_again(
    services: Services, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "dtq.worker")
    ran: list[int] = []
    gate_runs, go = threading.Event(), threading.Event()

    def gate(payload: dict[str, Any]) -> None:
        gate_runs.set()
        go.wait(30)

    handlers = registry.load([])
    handlers.add("once", lambda payload: ran.append(1))
    handlers.add("gate", gate)
    worker = in_process_worker(services, tmp_path, handlers, "w", prefetch=0)
    with running(worker):
        # Its one slot busy (and nothing prefetched), it claims nothing meanwhile.
        services.tasks.enqueue("gate")
        wait_until(gate_runs.is_set, timeout_s=15, what="the gate task to run")
        task = services.tasks.enqueue("once", max_attempts=3, backoff=FAST_BACKOFF)
        first = services.queue.claim(["default"], "w", 1, 300).leases[0]
        # Attempt 1 succeeded here but its report never left, and its lease expires: the
        # task comes back to this worker, which owes that success.
        worker.journal.add(
            [Outcome("default", task["id"], first.lease_token, True, '{"from": "journal"}')], "w"
        )
        wait_until(
            lambda: services.queue.clock.now_ms() > first.lease_expires_ms,
            timeout_s=5,
            what="the lease to expire",
        )
        go.set()
        wait_until(
            lambda: (
                (services.queue.task_hash("default", task["id"]) or {}).get("st") == "succeeded"
            ),
            timeout_s=15,
            what="the late success",
        )
        assert worker.journal.count() == 0
    assert ran == []
    assert f"task {task['id']}: its journaled outcome ended it" in caplog.text
    recorded_events(services)
    final = services.tasks.get(task["id"])
    assert final["result"] == {"from": "journal"}
    assert "duplicate_result" not in {e["event"] for e in final["history"]}


# -- real worker processes ---------------------------------------------------------------


def test_two_workers_from_one_folder_get_two_journals_and_drain_without_duplicates(
    services: Services, start_in: StartIn, tmp_path: Path
) -> None:
    args = ("--queues", "bulk", "--concurrency", "4")
    first = start_in(tmp_path, "first", *args)
    wait_until(lambda: holder(journal_file(tmp_path, 1)) == first.pid, timeout_s=30)
    second = start_in(tmp_path, "second", *args)
    wait_until(lambda: holder(journal_file(tmp_path, 2)) == second.pid, timeout_s=30)
    # Both up (registered once their recorder child is ready, then claiming at once).
    wait_until(
        lambda: registered(services, "first") and registered(services, "second"),
        timeout_s=30,
        what="both workers registered",
    )
    batch = [{"name": "dtq.noop", "queue": "bulk"}] * 1000
    ids = [t["id"] for _ in range(2) for t in services.tasks.enqueue_many(batch)]

    def stats() -> dict[str, float]:
        return dict(services.queue.stats(["bulk"])["bulk"])

    wait_until(lambda: stats().get("succeeded", 0) == 2000, timeout_s=60, what="the drain")
    ran_by = Counter(services.queue.workers_of("bulk", ids))
    assert set(ran_by) == {"first", "second"}, ran_by  # both drained
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert stats().get("duplicates", 0) == 0
    for name in ("first", "second"):
        log = (tmp_path / f"{name}.log").read_text()
        assert "refused" not in log and "rejected': 0" in log, log[-2000:]
    recorded_events(services, "bulk")
    with psycopg.connect(services.settings.database_url) as conn:
        events: dict[str, int] = dict(
            conn.execute(
                "SELECT event, count(*) FROM dtq_task_events "
                "WHERE event IN ('succeeded', 'duplicate_result') "
                "GROUP BY event"
            ).fetchall()
        )
    assert events == {"succeeded": 2000}
    assert "journal .dtq/journal-" in (tmp_path / "second.log").read_text()


def test_a_worker_started_beside_an_offline_one_leaves_it_its_outcomes(
    services: Services,
    settings: Settings,
    proxy: Proxy,
    start_in: StartIn,
    tmp_path: Path,
) -> None:
    """The shared journal's duplicates, made certain: a worker cut off with outcomes in
    its journal, and a second one started from the same folder, which synced them at its
    start (as its own) before the first could (then refused as duplicates)."""
    here = tmp_path / "here"
    ids = enqueue_marked(services, tmp_path)
    offline = start_in(
        here,
        "offline",
        "--concurrency",
        "4",
        "--prefetch",
        "0",
        *MARKED,
        redis_url=proxied(settings, proxy),
    )
    wait_until(lambda: held_by_the_worker(tmp_path), timeout_s=15)
    proxy.cut()
    wait_until(
        lambda: len(journaled_rows(journal_file(here))) == 4,
        timeout_s=10,
        what="4 journaled outcomes",
    )
    online = start_in(here, "online", "--concurrency", "2")
    wait_until(lambda: holder(journal_file(here, 2)) == online.pid, timeout_s=30)
    # It has synced its journal (its first claim comes after): it runs new work ...
    extra = services.tasks.enqueue("dtq.noop")["id"]
    wait_until(lambda: states(services, [extra]) == ["succeeded"], timeout_s=15)
    # ... and left the offline worker's outcomes alone.
    assert states(services, ids) == ["running"] * 4
    assert sorted(journaled_rows(journal_file(here))) == sorted((i, "offline") for i in ids)
    proxy.restore()
    wait_until(lambda: states(services, ids) == ["succeeded"] * 4, timeout_s=20)
    wait_until(lambda: journaled_rows(journal_file(here)) == [], timeout_s=5)
    assert_each_ran_once(services, ids)
    assert services.queue.stats(["default"])["default"].get("duplicates", 0) == 0
    assert offline.poll() is None


def test_an_explicit_journal_held_by_a_live_worker_is_refused(
    settings: Settings, spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    first = spawn_worker(journal="shared.db")
    path = tmp_path / "shared.db"
    wait_until(lambda: holder(path) == first.pid, timeout_s=30, what="the first worker's lock")
    second = subprocess.run(
        [DTQ, "worker", "--offline-db", str(path)],
        cwd=tmp_path,
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert second.stderr.splitlines() == [
        f"dtq: --offline-db {path}: another worker (pid {first.pid}) holds this journal; "
        "each worker needs a journal of its own"
    ], second.stderr
    assert first.poll() is None and holder(path) == first.pid


def test_a_worker_killed_9_leaves_its_journal_to_the_next_one_started_there(
    services: Services,
    settings: Settings,
    proxy: Proxy,
    start_in: StartIn,
    tmp_path: Path,
) -> None:
    here = tmp_path / "here"
    ids = enqueue_marked(services, tmp_path)
    doomed = start_in(
        here,
        "doomed",
        "--concurrency",
        "4",
        "--prefetch",
        "0",
        *MARKED,
        redis_url=proxied(settings, proxy),
    )
    wait_until(lambda: held_by_the_worker(tmp_path), timeout_s=15)
    proxy.cut()
    wait_until(
        lambda: len(journaled_rows(journal_file(here))) == 4,
        timeout_s=10,
        what="4 journaled outcomes",
    )
    doomed.kill()
    doomed.wait(10)
    assert holder(journal_file(here)) is None  # the kernel dropped the lock with the process
    assert sorted(journaled_rows(journal_file(here))) == sorted((i, "doomed") for i in ids)
    # One task is finished by someone else meanwhile: doomed's outcome of it is then a
    # duplicate, which shows whose outcome the next worker reports.
    stolen = ids[0]
    token = (services.queue.task_hash("default", stolen) or {})["tok"]
    services.queue.complete("default", stolen, token, '"stolen"', worker_id="thief")
    heir = start_in(here, "heir", "--concurrency", "4", *MARKED)
    wait_until(lambda: states(services, ids[1:]) == ["succeeded"] * 3, timeout_s=20)
    assert holder(journal_file(here)) == heir.pid and not journal_file(here, 2).exists()
    wait_until(lambda: journaled_rows(journal_file(here)) == [], timeout_s=5)
    recorded_events(services)
    dup = [e for e in history(services, stolen) if e["event"] == "duplicate_result"]
    assert [(e["worker_id"], e["reason"]) for e in dup] == [("doomed", "already_finished")]
    for task_id in ids[1:]:
        events = Counter(e["event"] for e in history(services, task_id))
        assert events["succeeded"] == 1 and events["claimed"] == 1, events
    assert len(list(tmp_path.glob("*.started"))) == 4  # nothing ran again
