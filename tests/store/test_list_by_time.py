"""``GET /tasks``' creation-time bounds at the store: the rows inside [from, until), read
through the index on (created_at, id) rather than by filtering the table."""

from __future__ import annotations

import json
from datetime import timedelta

from chalicelib.record.sql import q
from chalicelib.service.deps import Services


def test_the_bounds_select_rows_and_the_plan_ranges_over_the_index(services: Services) -> None:
    ids = [services.tasks.enqueue("t", queue=f"q{i % 2}")["id"] for i in range(6)]
    rows = {
        str(r["id"]): r
        for r in services.store.list_tasks(status=None, queue=None, name=None, limit=10, after=None)
    }
    created = sorted(rows[i]["created_at"] for i in ids)
    inside = services.store.list_tasks(
        status=None,
        queue=None,
        name=None,
        limit=10,
        after=None,
        created_from=created[1],
        created_until=created[4],
    )
    # Tasks created within one millisecond share a created_at: the bounds take them together.
    expected = [c for c in created if created[1] <= c < created[4]]
    assert [r["created_at"] for r in inside] == sorted(expected, reverse=True)
    params = {
        "status": None,
        "queue": None,
        "name": None,
        "limit": 51,
        "after_created": None,
        "after_id": None,
        "created_from": created[0],
        "created_until": created[0] + timedelta(minutes=5),
    }
    with services.store.connection() as conn:
        conn.execute("SET enable_seqscan = off")  # a six-row table would be read whole
        for queue in (None, "q1"):
            plan = conn.execute(
                "EXPLAIN (FORMAT JSON) " + q("list_tasks"), {**params, "queue": queue}
            ).fetchone()
            text = json.dumps(plan)
            assert "dtq_tasks_queue_created" in text if queue else "dtq_tasks_created" in text
            assert '"Index Cond": "' in text and "created_at >=" in text, text
            assert "Sort" not in text, text
        conn.execute("RESET enable_seqscan")
