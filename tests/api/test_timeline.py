"""``GET /stats/timeline``: per-minute counts and wait percentiles, cluster-wide."""

from __future__ import annotations

import pytest

from tests.api.conftest import Http, assert_error
from tests.api.test_tasks import claim, fail
from tests.api.test_workers import result, sync


def test_the_timeline_counts_what_ran_this_minute(admin: Http, worker: Http) -> None:
    admin.post("/tasks", {"name": "t"})
    admin.post("/tasks", {"name": "t", "max_attempts": 1})
    admin.post("/tasks", {"name": "t", "queue": "other"})
    [first, second] = claim(worker, 2)
    sync(worker, result(first))
    fail(worker, second)
    r = admin.get("/stats/timeline?minutes=60&queue=default")
    assert r.status_code == 200, r.body
    [bucket] = r.json_body["buckets"]
    assert set(bucket) == {
        "minute",
        "queue",
        "enqueued",
        "succeeded",
        "failed",
        "started",
        "p50_ms",
        "p99_ms",
    }
    assert (bucket["queue"], bucket["enqueued"], bucket["succeeded"], bucket["failed"]) == (
        "default",
        2,
        1,
        1,
    )
    assert bucket["started"] == 2
    assert 0 <= bucket["p50_ms"] <= bucket["p99_ms"] < 60_000
    every = admin.get("/stats/timeline").json_body["buckets"]
    assert {(b["queue"], b["enqueued"], b["p50_ms"]) for b in every} >= {("other", 1, None)}
    assert admin.get("/stats/timeline?queue=nothing").json_body == {"buckets": []}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("minutes=0", "minutes"),
        ("minutes=1441", "minutes"),
        ("minutes=abc", "minutes"),
        ("minutes=1.5", "minutes"),
        ("queue=no%20spaces", "queue"),
        ("queue=" + "q" * 101, "queue"),
        ("minutes=5&minutes=6", "minutes"),
        ("since=1", "since"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(admin: Http, query: str, field: str) -> None:
    error = assert_error(admin.get(f"/stats/timeline?{query}"), 400, "validation_error")
    assert error["details"][0]["field"] == field


def test_the_timeline_needs_the_admin_role(worker: Http, anon: Http) -> None:
    assert worker.get("/stats/timeline").status_code == 403
    assert anon.get("/stats/timeline").status_code == 401
