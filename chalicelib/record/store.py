"""The Postgres record (psycopg 3): tasks, their history, users and workers.

Every query is a named one from ``sql/queries.sql``; driver errors are translated at this
boundary by :func:`db_errors`, keeping the cause.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from typing import Any, LiteralString, NamedTuple

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from chalicelib.core.clock import from_ms, iso_ms
from chalicelib.core.errors import Conflict, Unavailable
from chalicelib.core.models import NewTask
from chalicelib.record.sql import q

Row = dict[str, Any]


@contextmanager
def db_errors() -> Iterator[None]:
    """Driver errors → DTQ errors: unreachable database → 503, constraint → 409."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict("a record with the same unique key exists") from exc
    except (psycopg.OperationalError, psycopg.errors.AdminShutdown) as exc:
        raise Unavailable("PostgreSQL is unavailable") from exc
    except PoolTimeout as exc:
        raise Unavailable("PostgreSQL is unavailable (no connection)") from exc


def make_pool(url: str, *, max_size: int = 10, timeout_s: float = 5.0) -> ConnectionPool:
    """A lazily-opened pool; connections fail fast so requests answer 503, never hang."""
    return ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        timeout=timeout_s,
        kwargs={
            "autocommit": True,
            "connect_timeout": max(1, int(timeout_s)),
            "row_factory": dict_row,
        },
        open=False,
        check=_check_if_idle,
        reconnect_timeout=timeout_s * 2,
    )


#: What marks a batch holding ``created`` events (enqueue.lua writes it so).
CREATED_MARK = '"ev":"created"'


class Recorded(NamedTuple):
    """What :meth:`Store.record` found besides recording the batch."""

    conflicts: list[Row]
    missing: list[str]  #: ids of the batch's tasks that have no row


@cache
def _first_recording() -> LiteralString:
    """``record_events`` without its lines marked ``-- replay only`` (queries.sql)."""
    lines = q("record_events").splitlines()
    return "\n".join(line for line in lines if not line.endswith("-- replay only"))


#: A connection returned to the pool less than this long ago is lent without a check.
CHECK_AFTER_IDLE_S = 1.0


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    # The check costs a round trip on every checkout (a quarter of a single enqueue's);
    # it matters for connections that sat idle through a server restart or a network
    # cut. One busy a moment ago is checked by its next real statement (a failure there
    # answers 503 and the pool discards the broken connection).
    returned = getattr(conn, "_dtq_returned", None)
    if returned is None or time.monotonic() - returned > CHECK_AFTER_IDLE_S:
        ConnectionPool.check_connection(conn)


class Store:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    @property
    def wait_s(self) -> float:
        """Longest a call waits for a connection (DTQ_IO_TIMEOUT_SECONDS): then 503."""
        return float(self.pool.timeout)

    @contextmanager
    def connection(self, wait_s: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, waited for at most ``wait_s`` (default :attr:`wait_s`)."""
        with db_errors():
            if self.pool.closed:
                self.pool.open(wait=False)
            with self.pool.connection(timeout=wait_s) as conn:
                try:
                    yield conn
                finally:
                    # Stamped here rather than by the pool's reset hook: a pool with a
                    # reset hook returns every connection through its worker thread, a
                    # thread hand-off and two context switches per statement.
                    conn._dtq_returned = time.monotonic()  # type: ignore[attr-defined]

    # -- tasks -------------------------------------------------------------------

    def insert_tasks(
        self, tasks: Sequence[NewTask], *, wait_s: float | None = None
    ) -> list[Row | None]:
        """Create task rows in one transaction, all-or-nothing. Per task: None when it
        was created, or the existing row when its idempotency key was used before with
        the same body. A key reused with another body raises Conflict and nothing of the
        batch is stored. ``wait_s``: as for :meth:`connection`."""
        with self.connection(wait_s) as conn:
            if len(tasks) == 1 or all(t.idempotency_key is None for t in tasks):
                # One statement (an INSERT or a COPY) is atomic and commits on its own;
                # an explicit transaction would add two round trips (BEGIN, COMMIT) to
                # every shared commit of concurrent creates: ≈ 30 % of its time.
                return self._insert(conn, tasks)
            with conn.transaction():
                return self._insert(conn, tasks)

    @staticmethod
    def _insert(conn: psycopg.Connection[Any], tasks: Sequence[NewTask]) -> list[Row | None]:
        plain = [t for t in tasks if t.idempotency_key is None]
        keyed = [t for t in tasks if t.idempotency_key is not None]
        if len(plain) > 1:
            # COPY is 3x executemany here; only possible when no conflict can occur.
            _copy(conn, [plain])
            plain = []
        existing: dict[str, Row] = {}
        for t in plain + keyed:
            with conn.execute(q("insert_task"), _insert_params(t)) as cur:
                if cur.fetchone() is not None:
                    continue
            # Inserted concurrently or before: ON CONFLICT waited for that commit.
            row = conn.execute(q("task_by_idempotency_key"), {"key": t.idempotency_key}).fetchone()
            if row is None or row["request_hash"] != t.request_hash:
                raise Conflict(
                    f"idempotency key {t.idempotency_key!r} was used with a different body"
                )
            existing[t.id] = row
        return [existing.get(t.id) for t in tasks]

    def copy_tasks(self, chunks: Iterable[Sequence[NewTask]]) -> None:
        """Create task rows without idempotency keys in one COPY, all-or-nothing (one
        statement), sending each chunk as soon as it comes: PostgreSQL stores it while
        the caller prepares the next. An exception from ``chunks`` aborts the COPY."""
        with self.connection() as conn:
            _copy(conn, chunks)

    def task_by_idempotency_key(self, key: str) -> Row | None:
        with self.connection() as conn:
            return conn.execute(q("task_by_idempotency_key"), {"key": key}).fetchone()

    def get_task(self, task_id: str) -> Row | None:
        with self.connection() as conn:
            return conn.execute(q("get_task"), {"id": task_id}).fetchone()

    def get_tasks(self, ids: Sequence[str]) -> list[Row]:
        with self.connection() as conn:
            return conn.execute(q("get_tasks"), {"ids": list(ids)}).fetchall()

    def history(self, task_id: str) -> list[Row]:
        with self.connection() as conn:
            return conn.execute(q("task_history"), {"id": task_id}).fetchall()

    def list_tasks(
        self,
        *,
        status: str | None,
        queue: str | None,
        name: str | None,
        limit: int,
        after: tuple[datetime, str] | None,
        created_from: datetime | None = None,
        created_until: datetime | None = None,
    ) -> list[Row]:
        params = {
            "status": status,
            "queue": queue,
            "name": name,
            "limit": limit,
            "after_created": after[0] if after else None,
            "after_id": after[1] if after else None,
            "created_from": created_from,
            "created_until": created_until,
        }
        with self.connection() as conn:
            return conn.execute(q("list_tasks"), params).fetchall()

    def queue_of(self, task_id: str) -> str | None:
        with self.connection() as conn:
            row = conn.execute(q("queue_of"), {"id": task_id}).fetchone()
            return None if row is None else str(row["queue"])

    def recorded_ids(self, ids: Sequence[str]) -> set[str]:
        """Those of ``ids`` that have a task row."""
        with self.connection() as conn:
            rows = conn.execute(q("terminal_status"), {"ids": list(ids)}).fetchall()
        return {str(r["id"]) for r in rows}

    def purge_finished(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` terminal tasks finished before ``before`` (with their
        history); returns how many."""
        with self.connection() as conn:
            return len(
                conn.execute(q("purge_finished"), {"before": before, "limit": limit}).fetchall()
            )

    def purge_schedule_fires(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` schedule fire records older than ``before``."""
        with self.connection() as conn:
            row = conn.execute(q("purge_schedule_fires"), {"before": before, "limit": limit})
            return int((row.fetchone() or {"n": 0})["n"])

    def live_tasks(self, after: str, limit: int) -> list[Row]:
        with self.connection() as conn:
            return conn.execute(q("live_tasks"), {"after": after, "limit": limit}).fetchall()

    # -- the dispatch backlog (chalicelib/service/dispatch.py) ---------------------------------

    def note_undispatched(self, task_ids: Sequence[str]) -> None:
        """Committed tasks whose Redis step failed, for the dispatcher to put into Redis."""
        with self.connection() as conn:
            conn.execute(q("note_dispatch_backlog"), {"ids": list(task_ids)})

    def take_undispatched(self, limit: int, lease_s: float) -> list[Row]:
        """Up to ``limit`` due backlog rows' tasks, oldest first, held for ``lease_s``."""
        with self.connection() as conn:
            params = {"limit": limit, "lease_s": lease_s}
            return conn.execute(q("take_dispatch_backlog"), params).fetchall()

    def settle_undispatched(self, done: Sequence[str], undone: Sequence[str]) -> None:
        """After a batch: ``done`` leave the backlog, ``undone`` are due again at once."""
        with self.connection() as conn:
            conn.execute(q("settle_dispatch_backlog"), {"done": list(done), "undone": list(undone)})

    # -- recording transitions -----------------------------------------------------

    def record(self, events_json: str) -> Recorded:
        """Apply a batch of transition events (a JSON array of them, as the Lua scripts
        emitted them): the rows of tasks created in Redis first (durability "queue"), then
        history rows, one snapshot per task (newest version wins) and the notifications
        they trigger, in one statement. Idempotent: a batch recorded before fails on the
        history key and runs again with the replay-only lines.

        Returns the replay's conflicts (``history_conflicts``: history rows the record
        holds with another event or time than the batch), always empty on the first
        attempt, which is not replaying, and the batch's tasks that have no row. A batch
        PostgreSQL refuses (a value it cannot store) raises ``psycopg.DataError`` or
        ``psycopg.IntegrityError``, unchanged."""
        params = {"events": events_json}
        with self.connection() as conn:
            if CREATED_MARK in events_json:
                # Its own statement: record_events must see these rows (a statement's
                # CTEs cannot see each other's inserts). A failure after this commit
                # leaves the batch pending, and its replay keeps the rows.
                conn.execute(q("insert_created"), params)
            try:
                missing = conn.execute(_first_recording(), params).fetchall()
                return Recorded([], [r["id"] for r in missing])
            except psycopg.errors.UniqueViolation:
                missing = conn.execute(q("record_events"), params).fetchall()
            # A second statement, on the replay path only: the first attempt pays nothing
            # for it. Not in the replay's transaction: if it fails, the batch stays
            # pending and its next replay checks again.
            conflicts = conn.execute(q("history_conflicts"), params).fetchall()
            return Recorded(conflicts, [r["id"] for r in missing])

    def insert_created(self, tasks: Sequence[NewTask]) -> None:
        """Rows for tasks of a queue of durability "queue" that may not be in Redis (its
        enqueue failed): the same insert the recorder makes from their ``created``
        events, so either may come first."""
        events = ",".join(
            f'{{"id":"{t.id}","ev":"created","st":"{t.status.value}","v":0,"row":{t.row_json()}}}'
            for t in tasks
        )
        with self.connection() as conn:
            conn.execute(q("insert_created"), {"events": f"[{events}]"})

    def park(self, *, stream: str, queue: str, entry_id: str, entry: str, error: str) -> bool:
        """Set aside a stream entry PostgreSQL refused (``dtq_parked_events``). False
        when it was parked before (an entry parked again after a crash before XDEL)."""
        params = {
            "stream": stream,
            "queue": queue,
            "entry_id": entry_id,
            "entry": entry,
            "error": error,
        }
        with self.connection() as conn:
            return conn.execute(q("park_event"), params).fetchone() is not None

    def parked(self, *, queue: str | None = None, limit: int = 100) -> list[Row]:
        """Parked stream entries, newest first."""
        with self.connection() as conn:
            return conn.execute(q("parked_events"), {"queue": queue, "limit": limit}).fetchall()

    # -- users and workers -----------------------------------------------------------

    def upsert_user(self, username: str, password_hash: str, role: str) -> None:
        with self.connection() as conn:
            conn.execute(
                q("upsert_user"), {"username": username, "hash": password_hash, "role": role}
            )

    def get_user(self, username: str) -> Row | None:
        with self.connection() as conn:
            return conn.execute(q("get_user"), {"username": username}).fetchone()

    def upsert_worker(
        self, worker_id: str, hostname: str, queues: Sequence[str], mode: str, concurrency: int
    ) -> None:
        params = {
            "worker_id": worker_id,
            "hostname": hostname,
            "queues": list(queues),
            "mode": mode,
            "concurrency": concurrency,
        }
        with self.connection() as conn:
            conn.execute(q("upsert_worker"), params)


def _insert_params(t: NewTask) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "queue": t.queue,
        "priority": t.priority,
        # JSON as text (PostgreSQL parses it into the jsonb column): the payload was
        # encoded once already, by validation.
        "payload": t.payload_json,
        "status": t.status.value,
        "max_attempts": t.max_attempts,
        "timeout_seconds": t.timeout_seconds,
        "backoff": t.backoff.json_text,
        "idempotency_key": t.idempotency_key,
        "request_hash": t.request_hash,
        "lock_key": t.lock_key,
        "schedule_id": t.schedule_id,
        "webhook_url": t.webhook_url,
        "run_at": from_ms(t.run_at_ms),
        "created_at": from_ms(t.created_at_ms),
        "created_scheduled": t.scheduled,
    }


def _copy(conn: psycopg.Connection[Any], chunks: Iterable[Sequence[NewTask]]) -> None:
    with conn.cursor().copy(q("copy_tasks")) as copy:
        for chunk in chunks:
            copy.write("".join(map(_copy_line, chunk)))


def _copy_line(t: NewTask) -> str:
    """One row of COPY's text format. Written here rather than by ``Copy.write_row``,
    which cost five times as much client CPU per task (a bulk enqueue's largest cost)."""
    return (
        "\t".join(
            (
                t.id,
                t.name,
                t.queue,
                str(t.priority),
                # Compact JSON has no raw control characters; its backslashes are COPY's escape.
                t.payload_json.replace("\\", "\\\\"),
                t.status.value,
                str(t.max_attempts),
                str(t.timeout_seconds),
                t.backoff.json_text,  # numbers only
                _copy_text(t.lock_key),
                _copy_text(t.schedule_id),
                _copy_text(t.webhook_url),
                iso_ms(t.run_at_ms),
                iso_ms(t.created_at_ms),
                "t" if t.scheduled else "f",
            )
        )
        + "\n"
    )


def _copy_text(value: str | None) -> str:
    if value is None:
        return "\\N"
    return (
        value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
