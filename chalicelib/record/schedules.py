"""Schedules in the record (``dtq_schedules``): one statement each. The rules (cron,
time zones, catch-up, firing) are in chalicelib/service/schedules.py and firing.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg

from chalicelib.record.sql import q
from chalicelib.record.store import Row, Store


class ScheduleRecord:
    def __init__(self, store: Store) -> None:
        self.store = store

    def insert(self, params: dict[str, Any]) -> Row | None:
        """The new row; None when its name is taken."""
        with self.store.connection() as conn:
            return conn.execute(q("insert_schedule"), params).fetchone()

    def rows(self) -> list[Row]:
        with self.store.connection() as conn:
            return conn.execute(q("list_schedules")).fetchall()

    def get(self, schedule_id: str) -> Row | None:
        with self.store.connection() as conn:
            return conn.execute(q("get_schedule"), {"id": schedule_id}).fetchone()

    def update(self, params: dict[str, Any]) -> Row | None:
        """The updated row; None when it is gone. A taken name raises Conflict."""
        with self.store.connection() as conn:
            return conn.execute(q("update_schedule"), params).fetchone()

    def delete(self, schedule_id: str) -> bool:
        with self.store.connection() as conn:
            return conn.execute(q("delete_schedule"), {"id": schedule_id}).fetchone() is not None

    # -- fires (the rules that use these are in chalicelib/service/firing.py) -------------

    def enabled(self) -> list[Row]:
        with self.store.connection() as conn:
            return conn.execute(q("enabled_schedules")).fetchall()

    @contextmanager
    def locked(self, schedule_id: str) -> Iterator[Firing | None]:
        """One transaction holding the schedule's row (``FOR UPDATE SKIP LOCKED``); None
        when another instance holds it, or it was disabled or deleted meanwhile."""
        with self.store.connection() as conn, conn.transaction():
            row = conn.execute(q("lock_schedule"), {"id": schedule_id}).fetchone()
            yield None if row is None else Firing(conn, row)

    @contextmanager
    def manual(self, row: Row) -> Iterator[Firing]:
        """One transaction for a fire asked for by hand (no row lock: it fires anyway)."""
        with self.store.connection() as conn, conn.transaction():
            yield Firing(conn, row)

    def last_fires(self, schedule_id: str, limit: int) -> list[Row]:
        with self.store.connection() as conn:
            return conn.execute(
                q("last_fires"), {"schedule_id": schedule_id, "limit": limit}
            ).fetchall()


class Firing:
    """The statements of one schedule's fires, all in the transaction that holds it: a
    fire row and its task id commit together, or not at all."""

    def __init__(self, conn: psycopg.Connection[Any], row: Row) -> None:
        self.conn = conn
        self.row = row
        self.schedule_id = str(row["id"])

    def previous_task_id(self) -> str | None:
        prev = self.conn.execute(
            q("previous_fire_task"), {"schedule_id": self.schedule_id}
        ).fetchone()
        return None if prev is None else str(prev["task_id"])

    def insert(self, fire_at: datetime, *, skipped: bool, now: datetime) -> bool:
        """Claim the fire time; False when it fired already (the unique row decides)."""
        params = {
            "schedule_id": self.schedule_id,
            "fire_at": fire_at,
            "skipped": skipped,
            "now": now,
        }
        return self.conn.execute(q("insert_fire"), params).fetchone() is not None

    def insert_free(self, now: datetime) -> datetime:
        """Claim ``now``, or the next free microsecond after it (cron fire times are whole
        minutes; a manual run colliding with one moves on)."""
        fire_at = now
        while not self.insert(fire_at, skipped=False, now=now):
            fire_at += timedelta(microseconds=1)
        return fire_at

    def set_task(self, fire_at: datetime, task_id: str) -> None:
        self.conn.execute(
            q("set_fire_task"),
            {"schedule_id": self.schedule_id, "fire_at": fire_at, "task_id": task_id},
        )

    def advance(self, at: datetime) -> None:
        self.conn.execute(q("advance_schedule"), {"id": self.schedule_id, "at": at})
