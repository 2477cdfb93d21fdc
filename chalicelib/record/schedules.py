"""Schedules in the record (``dtq_schedules``): one statement each. The rules (cron,
time zones, catch-up, firing) are in chalicelib/service/schedules.py and firing.py."""

from __future__ import annotations

from typing import Any

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
