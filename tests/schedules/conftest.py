"""Schedules against the real Redis and PostgreSQL, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib.service.deps import Services
from chalicelib.service.schedules import Schedules

# The HTTP API fixtures (the app served from the test's own services, tokens).
from tests.api.conftest import admin, admin_token, anon, api, client, worker, worker_token  # noqa: F401

#: Simulated time starts here; the tests step it forward themselves.
T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def schedules(services: Services) -> Schedules:
    return Schedules(services.tasks)


def body(name: str, cron: str = "* * * * *", **fields: Any) -> dict[str, Any]:
    return {"name": name, "cron": cron, "task": {"name": f"job.{name}"}, **fields}


def tasks_of(services: Services, schedule_id: str) -> list[dict[str, Any]]:
    with services.store.connection() as conn:
        return conn.execute(
            "SELECT id, idempotency_key, schedule_id, status FROM dtq_tasks"
            " WHERE schedule_id = %s ORDER BY idempotency_key",
            (schedule_id,),
        ).fetchall()


def fires_of(services: Services, schedule_id: str) -> list[dict[str, Any]]:
    with services.store.connection() as conn:
        return conn.execute(
            "SELECT fire_at, task_id, skipped FROM dtq_schedule_fires"
            " WHERE schedule_id = %s ORDER BY fire_at",
            (schedule_id,),
        ).fetchall()
