"""Task endpoints through the Chalice test client: happy paths and documented errors."""

from __future__ import annotations

import threading
import uuid
from typing import Any
from urllib.parse import quote

from chalicelib.service.deps import Services
from chalicelib.service.recorder import Recorder
from tests.api.conftest import Http, assert_error


def claim(worker: Http, n: int = 1, queue: str = "default") -> list[dict[str, Any]]:
    r = worker.post("/tasks/claim", {"worker_id": "w1", "queues": [queue], "max": n})
    assert r.status_code == 200, r.body
    return list(r.json_body["tasks"])


def fail(worker: Http, lease: dict[str, Any], error: str = "boom") -> None:
    item = {
        "id": lease["id"],
        "lease_token": lease["lease_token"],
        "status": "failed",
        "error": error,
    }
    r = worker.post("/tasks/sync", {"worker_id": "w1", "results": [item]})
    assert r.json_body["accepted"] == [lease["id"]], r.body


def make_dead(admin: Http, worker: Http, queue: str = "default") -> str:
    task = admin.post("/tasks", {"name": "doomed", "queue": queue, "max_attempts": 1}).json_body
    [lease] = claim(worker, queue=queue)
    fail(worker, lease)
    return str(task["id"])


def test_create_returns_the_documented_task(admin: Http) -> None:
    body = {
        "name": "reports.daily",
        "payload": {"day": "2026-11-28"},
        "priority": 7,
        "queue": "reports",
        "max_attempts": 3,
        "timeout_seconds": 60,
        "backoff": {"base_seconds": 2, "factor": 3, "max_seconds": 60, "jitter": False},
        "lock_key": "acct-1",
    }
    r = admin.post("/tasks", body)
    assert r.status_code == 201
    task = r.json_body
    uuid.UUID(task["id"])
    assert {
        k: task[k]
        for k in (
            "name",
            "queue",
            "priority",
            "payload",
            "status",
            "attempts",
            "max_attempts",
            "timeout_seconds",
            "lock_key",
        )
    } == {
        "name": "reports.daily",
        "queue": "reports",
        "priority": 7,
        "payload": {"day": "2026-11-28"},
        "status": "queued",
        "attempts": 0,
        "max_attempts": 3,
        "timeout_seconds": 60,
        "lock_key": "acct-1",
    }
    assert task["backoff"] == {
        "base_seconds": 2.0,
        "factor": 3.0,
        "max_seconds": 60.0,
        "jitter": False,
    }
    for key in (
        "idempotency_key",
        "schedule_id",
        "worker_id",
        "started_at",
        "finished_at",
        "result",
        "error",
    ):
        assert task[key] is None
    assert task["created_at"].endswith("+00:00") and task["run_at"].endswith("+00:00")


def test_delayed_task_is_scheduled(admin: Http) -> None:
    r = admin.post("/tasks", {"name": "later", "delay_seconds": 60})
    assert r.status_code == 201 and r.json_body["status"] == "scheduled"
    r = admin.post("/tasks", {"name": "later", "run_at": "2031-01-01T00:00:00+02:00"})
    assert r.json_body["status"] == "scheduled"
    assert r.json_body["run_at"] == "2030-12-31T22:00:00.000+00:00"


def test_idempotency_key_in_body_or_header(admin: Http, services: Services) -> None:
    first = admin.post("/tasks", {"name": "t", "idempotency_key": "k1"})
    again = admin.post("/tasks", {"name": "t", "idempotency_key": "k1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json_body["id"] == first.json_body["id"]
    other = admin.post("/tasks", {"name": "t", "payload": {"x": 1}, "idempotency_key": "k1"})
    assert_error(other, 409, "conflict")
    header = admin.post("/tasks", {"name": "t"}, headers={"Idempotency-Key": "k1"})
    assert header.status_code == 200 and header.json_body["id"] == first.json_body["id"]
    mixed = admin.post(
        "/tasks", {"name": "t", "idempotency_key": "k2"}, headers={"Idempotency-Key": "k3"}
    )
    assert_error(mixed, 400, "validation_error")
    assert len(services.tasks.list()[0]) == 1


def test_concurrent_identical_requests_create_exactly_one(
    admin: Http, services: Services, client: Any
) -> None:
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        http = Http(client, admin.token)
        barrier.wait()
        statuses.append(http.post("/tasks", {"name": "t", "idempotency_key": "same"}).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 7 + [201]
    assert len(services.tasks.list()[0]) == 1


def test_strings_are_stored_and_returned_verbatim(admin: Http) -> None:
    nasty = "'; DROP TABLE dtq_tasks; -- <script>alert(1)</script> \t\r\n\x1b[31m \u202e é 😀"
    r = admin.post(
        "/tasks",
        {
            "name": "t",
            "payload": {"s": nasty, nasty: [nasty]},
            "lock_key": nasty,
            "idempotency_key": nasty,
        },
    )
    assert r.status_code == 201, r.body
    got = admin.get(f"/tasks/{r.json_body['id']}").json_body
    assert got["payload"] == {"s": nasty, nasty: [nasty]}
    assert got["lock_key"] == nasty and got["idempotency_key"] == nasty


def test_batch_is_all_or_nothing_and_names_the_index(admin: Http, services: Services) -> None:
    ok = admin.post(
        "/tasks/batch", {"tasks": [{"name": f"t{i}", "priority": i} for i in range(10)]}
    )
    assert ok.status_code == 201
    assert [t["name"] for t in ok.json_body["tasks"]] == [f"t{i}" for i in range(10)]
    bad = [{"name": "a"}, {"name": "b"}, {"name": "c", "priority": 10}]
    error = assert_error(admin.post("/tasks/batch", {"tasks": bad}), 400, "validation_error")
    assert error["details"][0]["field"] == "tasks[2].priority"
    assert len(services.tasks.list(limit=100)[0]) == 10
    assert_error(admin.post("/tasks/batch", {"tasks": []}), 400, "validation_error")
    too_many = {"tasks": [{"name": "t"}] * 1001}
    assert_error(admin.post("/tasks/batch", too_many), 400, "validation_error")
    assert_error(
        admin.post("/tasks/batch", {"tasks": [{"name": "t"}], "x": 1}), 400, "validation_error"
    )


def test_batch_of_1000(admin: Http) -> None:
    r = admin.post(
        "/tasks/batch", {"tasks": [{"name": "t", "payload": {"i": i}} for i in range(1000)]}
    )
    assert r.status_code == 201 and len(r.json_body["tasks"]) == 1000


def test_list_filters_and_pages_newest_first(admin: Http) -> None:
    ids = [
        admin.post("/tasks", {"name": "a" if i % 2 else "b", "queue": "q"}).json_body["id"]
        for i in range(5)
    ]
    page = admin.get("/tasks?limit=2").json_body
    assert [t["id"] for t in page["tasks"]] == ids[::-1][:2] and page["next_cursor"]
    rest = admin.get(f"/tasks?limit=10&cursor={page['next_cursor']}").json_body
    assert [t["id"] for t in rest["tasks"]] == ids[::-1][2:] and rest["next_cursor"] is None
    assert len(admin.get("/tasks?name=a").json_body["tasks"]) == 2
    assert len(admin.get("/tasks?queue=q&status=queued").json_body["tasks"]) == 5
    assert admin.get("/tasks?queue=other").json_body["tasks"] == []
    for bad in (
        "limit=0",
        "limit=501",
        "limit=x",
        "status=nope",
        "cursor=garbage",
        "bogus=1",
        "limit=1&limit=2",
        "queue=a%20b",
    ):
        assert_error(admin.get(f"/tasks?{bad}"), 400, "validation_error")


def test_get_task_with_history_and_404(admin: Http, worker: Http, services: Services) -> None:
    task = admin.post("/tasks", {"name": "t"}).json_body
    [lease] = claim(worker)
    fail(worker, lease, "first try failed")
    Recorder(services.queue, services.store, "test").drain()
    got = admin.get(f"/tasks/{task['id']}").json_body
    events = [(e["event"], e["attempt"]) for e in got["history"]]
    # (events[1], "queued", is derived by client.py from the row's current run_at, which a
    # retry moves; reported to the lead.)
    assert events[0] == ("created", 0)
    assert events[2:] == [("claimed", 1), ("failed", 1), ("retrying", 1)]
    assert got["history"][3]["error"] == "first try failed"
    assert "run_at" in got["history"][4]
    assert_error(admin.get(f"/tasks/{uuid.uuid4()}"), 404, "not_found")
    assert_error(admin.get("/tasks/not-a-uuid"), 404, "not_found")


def test_cancel_queued_running_and_finished(admin: Http, worker: Http) -> None:
    queued = admin.post("/tasks", {"name": "t"}).json_body
    r = admin.post(f"/tasks/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json_body["status"] == "canceled"
    assert_error(admin.post(f"/tasks/{queued['id']}/cancel"), 409, "conflict")
    running = admin.post("/tasks", {"name": "t"}).json_body
    [lease] = claim(worker)
    r = admin.post(f"/tasks/{running['id']}/cancel")
    assert r.status_code == 202
    assert r.json_body["status"] == "running" and r.json_body["cancel_requested"] is True
    ext = worker.post(
        f"/tasks/{running['id']}/lease", {"lease_token": lease["lease_token"], "extend_seconds": 30}
    )
    assert ext.json_body["cancel_requested"] is True
    assert admin.get(f"/tasks/{running['id']}").json_body["status"] == "canceled"
    assert_error(admin.post(f"/tasks/{uuid.uuid4()}/cancel"), 404, "not_found")


def test_retry_dead_or_canceled_only(admin: Http, worker: Http) -> None:
    dead = make_dead(admin, worker)
    assert admin.get(f"/tasks/{dead}").json_body["status"] == "dead"
    r = admin.post(f"/tasks/{dead}/retry")
    assert r.status_code == 200 and r.json_body["status"] == "queued"
    assert r.json_body["attempts"] == 0
    assert_error(admin.post(f"/tasks/{dead}/retry"), 409, "conflict")
    assert_error(admin.post(f"/tasks/{uuid.uuid4()}/retry"), 404, "not_found")


def test_dead_letter_list_and_replay(admin: Http, worker: Http, services: Services) -> None:
    first = make_dead(admin, worker, "q1")
    second = make_dead(admin, worker, "q2")
    Recorder(services.queue, services.store, "test").drain()
    listed = admin.get("/dead-letter").json_body
    assert {t["id"] for t in listed["tasks"]} == {first, second}
    assert [t["id"] for t in admin.get("/dead-letter?queue=q1").json_body["tasks"]] == [first]
    assert_error(admin.get("/dead-letter?status=queued"), 400, "validation_error")
    r = admin.post("/dead-letter/replay", {"ids": [first, str(uuid.uuid4())]})
    assert r.json_body == {"replayed": 1}
    assert admin.post("/dead-letter/replay", {"queue": "q2"}).json_body == {"replayed": 1}
    assert admin.post("/dead-letter/replay", {"queue": "q2"}).json_body == {"replayed": 0}
    for body in (
        {},
        {"ids": [first], "queue": "q1"},
        {"ids": "x"},
        {"queue": 3},
        {"ids": ["junk"]},
        {"queue": None},
    ):
        assert_error(admin.post("/dead-letter/replay", body), 400, "validation_error")


def test_tasks_filtered_by_creation_time(admin: Http) -> None:
    made = [admin.post("/tasks", {"name": "t"}).json_body for _ in range(4)]
    times = sorted(t["created_at"] for t in made)
    r = admin.get(
        f"/tasks?created_after={quote(times[1])}&created_before={quote(times[3])}&limit=10"
    )
    assert r.status_code == 200, r.body
    assert [t["created_at"] for t in r.json_body["tasks"]] == [times[2], times[1]]
    # An offset's '+' left unescaped arrives as a space and still reads as '+'.
    assert times[0].endswith("+00:00")
    spaced = admin.get("/tasks?created_after=" + times[0].replace("+", "%20") + "&limit=10")
    assert len(spaced.json_body["tasks"]) == 4
    for query, field in [
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-12-06T10:00:00", "created_before"),
    ]:
        error = assert_error(admin.get(f"/tasks?{query}"), 400, "validation_error")
        assert error["details"][0]["field"] == field
    assert_error(admin.get("/dead-letter?created_after=x"), 400, "validation_error")
