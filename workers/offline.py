"""The worker's SQLite journal: what it owes the server.

Every outcome is written here *before* it is reported and deleted only once the server
has accepted or rejected it, so a worker killed at any point (or cut off from the
network) loses no outcome: on restart it syncs the journal before claiming anything.
Tasks created by handlers are journaled the same way and pushed with their idempotency
key, so a re-sent creation is deduplicated by the server.

WAL with ``synchronous=NORMAL``: a committed entry survives the process being killed
(kill -9); only an OS crash or power loss can drop the last commits, and then the task's
lease expires and it is retried — at-least-once still holds.

One journal, one live process: a journal is locked (``flock`` on ``<path>.lock``) for as
long as it is open, and the OS drops the lock when its process dies, kill -9 included.
Its rows are therefore always the current owner's, or those of a dead previous owner of
the file, which the next owner syncs as they were written (lease token and worker id).
Two live workers on one journal each synced the other's in-flight outcomes under their
own id at start: a duplicate per outcome, recorded for the wrong worker.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from chalicelib.core.errors import ConfigError, DTQError
from chalicelib.core.models import Outcome

log = logging.getLogger("dtq.worker")

#: Numbered default journals tried before giving up: more live workers than this in one
#: folder is a mistake to report, not a reason to create files forever.
MAX_DEFAULT_JOURNALS = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    task_id TEXT PRIMARY KEY, queue TEXT NOT NULL, token TEXT NOT NULL,
    succeeded INTEGER NOT NULL, result TEXT NOT NULL, error TEXT NOT NULL,
    retry_delay_ms INTEGER, started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL,
    worker_id TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS created (
    idempotency_key TEXT PRIMARY KEY, body TEXT NOT NULL, seq INTEGER NOT NULL
);
"""


def _row(o: Outcome, worker_id: str) -> tuple[Any, ...]:
    """An outcome as a journal row; ``worker_id`` is its author unless it names one (a
    row journaled by a previous owner of the journal keeps its id)."""
    return (
        o.task_id,
        o.queue,
        o.token,
        int(o.succeeded),
        o.result_json,
        o.error,
        o.retry_delay_ms,
        o.started_ms,
        o.finished_ms,
        o.worker_id or worker_id,
    )


_COLUMNS = (
    "task_id, queue, token, succeeded, result, error, retry_delay_ms, started_ms, "
    "finished_ms, worker_id"
)


class JournalBusy(DTQError):
    """Another live process holds the journal's lock."""

    def __init__(self, path: str, holder: int | None) -> None:
        self.path, self.holder = path, holder
        by = f"another worker (pid {holder})" if holder else "another worker"
        super().__init__(f"{path}: {by} holds this journal")


def _lock(path: str) -> int:
    """Lock ``<path>.lock`` for this process (released by :meth:`Journal.close` or the
    process's death); raises :class:`JournalBusy` when another process holds it.

    A sidecar file, not the database: SQLite's own POSIX locks on the database are
    dropped when any descriptor of that file in the process is closed. The descriptor is
    close-on-exec, so the recorder child and ``--pool process`` children, which exec,
    never hold it on after the worker died."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        raise JournalBusy(path, int(text) if text.isdigit() else None) from None
    except BaseException:
        os.close(fd)
        raise
    # The holder's pid, for the message another worker gets (and for a person looking).
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Journal:
    """Thread-safe: the run loop, the heartbeat thread and handlers all write to it."""

    def __init__(self, path: str) -> None:
        """Open and lock the journal at ``path``; raises :class:`JournalBusy` while it
        is open elsewhere (another process, or another ``Journal`` of this one)."""
        self._lock_fd = -1
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._lock_fd = _lock(path)  # before SQLite touches the file
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # No other worker writes here (the lock), but a person or a test may read it
            # (sqlite3 CLI): wait out their short locks rather than fail a commit.
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(outcomes)")}
            if "worker_id" not in columns:  # a journal written before rows kept their worker
                self._db.execute(
                    "ALTER TABLE outcomes ADD COLUMN worker_id TEXT NOT NULL DEFAULT ''"
                )
        except BaseException:
            self._release()
            raise
        # Ids with a journaled outcome, so the run loop never runs such a task again
        # (checked per claimed task, so it must be a set lookup, not a query).
        self._owed = {r[0] for r in self._db.execute("SELECT task_id FROM outcomes")}
        self._seq = self._db.execute("SELECT coalesce(max(seq), 0) FROM created").fetchone()[0]

    @classmethod
    def first_free(cls, directory: str, hostname: str) -> Journal:
        """The first journal of ``journal-<hostname>.db``, ``journal-<hostname>-2.db``, …
        in ``directory`` that no live process holds. The first free one, not a new one:
        a worker restarted after a crash takes its predecessor's file and syncs what is
        left in it."""
        held: list[str] = []
        for n in range(1, MAX_DEFAULT_JOURNALS + 1):
            name = f"journal-{hostname}.db" if n == 1 else f"journal-{hostname}-{n}.db"
            try:
                journal = cls(os.path.join(directory, name))
            except JournalBusy as exc:
                held.append(f"{name} (pid {exc.holder or '?'})")
                continue
            log.info(
                "journal %s%s",
                journal.path,
                f" (held by other workers: {', '.join(held)})" if held else "",
            )
            return journal
        raise ConfigError(
            f"{directory}: all {MAX_DEFAULT_JOURNALS} journals of "
            f"journal-{hostname}*.db are held by live workers"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._release()

    def _release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = -1

    # -- outcomes ------------------------------------------------------------------

    def add(self, reports: Sequence[Outcome], worker_id: str = "") -> None:
        """Journal outcomes in one transaction (durable when this returns); ``worker_id``:
        the worker that ran those without one of their own."""
        if not reports:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT OR REPLACE INTO outcomes ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [_row(r, worker_id) for r in reports],
            )
            self._db.execute("COMMIT")
            self._owed.update(r.task_id for r in reports)

    def owes(self, task_id: str) -> bool:
        """True when an outcome of this task is journaled and not yet settled."""
        return task_id in self._owed

    def pending(self, limit: int = 500) -> list[Outcome]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM outcomes ORDER BY finished_ms LIMIT ?", (limit,)
            ).fetchall()
        return [_report(r) for r in rows]

    def outcome(self, task_id: str) -> Outcome | None:
        """The journaled outcome of this task, if any."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM outcomes WHERE task_id = ?", (task_id,)
            ).fetchone()
        return None if row is None else _report(row)

    def settle(self, task_ids: Iterable[str]) -> None:
        """The server accepted or rejected these outcomes: forget them."""
        ids = [(t,) for t in task_ids]
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM outcomes WHERE task_id = ?", ids)
            self._db.execute("COMMIT")
            self._owed.difference_update(t for (t,) in ids)

    def count(self) -> int:
        return len(self._owed)

    # -- tasks created by handlers ----------------------------------------------------

    def add_created(self, idempotency_key: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            self._db.execute(
                "INSERT OR IGNORE INTO created VALUES (?,?,?)",
                (idempotency_key, json.dumps(body, separators=(",", ":")), self._seq),
            )

    def pending_created(self, limit: int = 500) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM created ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def settle_created(self, keys: Iterable[str]) -> None:
        rows = [(k,) for k in keys]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM created WHERE idempotency_key = ?", rows)
            self._db.execute("COMMIT")

    def count_created(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM created").fetchone()[0])


def _report(r: Sequence[Any]) -> Outcome:
    return Outcome(r[1], r[0], r[2], bool(r[3]), r[4], r[5], r[6], r[9], r[7], r[8])
