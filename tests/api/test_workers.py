"""Worker endpoints: register, fleet, claim, lease extension and the /tasks/sync rules."""

from __future__ import annotations

import uuid
from typing import Any

from chalicelib.service.deps import Services
from chalicelib.service.recorder import Recorder
from tests.api.conftest import Http, assert_error
from tests.api.test_tasks import claim


def result(lease: dict[str, Any], status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    return {"id": lease["id"], "lease_token": lease["lease_token"], "status": status, **extra}


def sync(
    worker: Http, *results: dict[str, Any], worker_id: str = "w1", created: list[Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"worker_id": worker_id, "results": list(results)}
    if created is not None:
        body["created"] = created
    r = worker.post("/tasks/sync", body)
    assert r.status_code == 200, r.body
    return dict(r.json_body)


def stats(services: Services, queue: str = "default") -> dict[str, float]:
    return services.queue.stats([queue])[queue]


def test_register_heartbeat_and_list(worker: Http, admin: Http) -> None:
    body = {"queues": ["default", "mail"], "hostname": "box-1", "concurrency": 4, "mode": "http"}
    first = worker.post("/workers/register", body).json_body
    assert first["heartbeat_interval_seconds"] == 10
    again = worker.post("/workers/register", {**body, "worker_id": first["worker_id"]})
    assert again.json_body["worker_id"] == first["worker_id"]
    [listed] = admin.get("/workers").json_body["workers"]
    assert listed["worker_id"] == first["worker_id"] and listed["alive"] is True
    assert listed["queues"] == ["default", "mail"] and listed["hostname"] == "box-1"
    assert listed["mode"] == "http" and listed["running"] == []
    for bad in (
        {**body, "mode": "carrier-pigeon"},
        {**body, "queues": []},
        {**body, "concurrency": 0},
        {"hostname": "h"},
    ):
        assert_error(worker.post("/workers/register", bad), 400, "validation_error")


def test_claim_returns_leases_highest_priority_first(admin: Http, worker: Http) -> None:
    for p in (1, 9, 5):
        admin.post("/tasks", {"name": "t", "priority": p, "queue": "a" if p != 9 else "b"})
    r = worker.post(
        "/tasks/claim", {"worker_id": "w1", "queues": ["a", "b"], "max": 3, "lease_seconds": 60}
    )
    tasks = r.json_body["tasks"]
    assert [t["priority"] for t in tasks] == [9, 5, 1]
    for t in tasks:
        assert t["status"] == "running" and t["attempt"] == 1 and t["fence"] == 1
        assert t["lease_token"] and t["lease_expires_at"].endswith("+00:00")
        assert t["worker_id"] == "w1" and t["created_at"] is not None
    assert claim(worker, queue="a") == []
    [listed] = [w for w in admin.get("/workers").json_body["workers"]] or [None]
    assert listed is None  # claiming is not registering


def test_claim_validation(worker: Http) -> None:
    for bad in (
        {"queues": ["default"]},
        {"worker_id": "w", "queues": ["default"], "max": 101},
        {"worker_id": "w", "queues": "default"},
        {"worker_id": "w", "queues": ["default"], "lease_seconds": 0},
    ):
        assert_error(worker.post("/tasks/claim", bad), 400, "validation_error")


def test_wait_answers_when_work_may_be_there(admin: Http, worker: Http, services: Services) -> None:
    body = {"queues": ["default"], "timeout_seconds": 0.2}
    assert worker.post("/tasks/wait", body).json_body == {"work": False}  # nothing, timed out
    admin.post("/tasks", {"name": "t"})
    assert worker.post("/tasks/wait", body).json_body == {"work": True}  # its wake-up signal
    # A delayed task falls due without a signal (its enqueue signals once, so that waits
    # begun earlier look at its due time; that one is gone here): the wait ends when due.
    [ready] = claim(worker)
    admin.post("/tasks", {"name": "t", "delay_seconds": 0.3})
    services.redis.delete(services.keys.queue("default").signal)
    r = worker.post("/tasks/wait", {"queues": ["default"], "timeout_seconds": 20})
    assert r.json_body == {"work": True} and len(claim(worker)) == 1 and ready


def test_wait_validation(worker: Http, anon: Http) -> None:
    for bad in (
        {},
        {"queues": []},
        {"queues": ["default"], "timeout_seconds": 21},
        {"queues": ["default"], "timeout_seconds": 0},
        {"queues": ["a b"]},
    ):
        assert_error(worker.post("/tasks/wait", bad), 400, "validation_error")
    assert_error(anon.post("/tasks/wait", {"queues": ["default"]}), 401, "unauthorized")


def test_extend_lease_and_lost_leases(admin: Http, worker: Http, services: Services) -> None:
    task = admin.post("/tasks", {"name": "t"}).json_body
    [lease] = claim(worker)
    path = f"/tasks/{task['id']}/lease"
    r = worker.post(path, {"lease_token": lease["lease_token"], "extend_seconds": 120})
    assert r.status_code == 200 and r.json_body["cancel_requested"] is False
    assert r.json_body["lease_expires_at"] > lease["lease_expires_at"]
    before = services.queue.task_hash("default", task["id"])
    # Another worker's (or a made-up) token: 409, and the task is exactly as it was.
    assert_error(worker.post(path, {"lease_token": "someone-else:1"}), 409, "conflict")
    assert services.queue.task_hash("default", task["id"]) == before
    sync(worker, result(lease))
    assert_error(worker.post(path, {"lease_token": lease["lease_token"]}), 409, "conflict")
    assert_error(
        worker.post(f"/tasks/{uuid.uuid4()}/lease", {"lease_token": "x"}), 404, "not_found"
    )


def test_sync_accepts_outcomes_and_follows_retry_policy(
    admin: Http, worker: Http, services: Services
) -> None:
    ok_task = admin.post("/tasks", {"name": "t"}).json_body
    fail_task = admin.post("/tasks", {"name": "t", "max_attempts": 2}).json_body
    leases = {t["id"]: t for t in claim(worker, 2)}
    reply = sync(
        worker,
        result(leases[ok_task["id"]], result={"rows": 3}),
        result(leases[fail_task["id"]], "failed", error="disk full"),
    )
    assert sorted(reply["accepted"]) == sorted([ok_task["id"], fail_task["id"]])
    assert reply["rejected"] == [] and reply["created"] == []
    got = admin.get(f"/tasks/{ok_task['id']}").json_body
    assert got["status"] == "succeeded" and got["result"] == {"rows": 3}
    failed = admin.get(f"/tasks/{fail_task['id']}").json_body
    assert failed["status"] == "retrying" and failed["error"] == "disk full"


def test_resending_the_same_sync_is_harmless(admin: Http, worker: Http, services: Services) -> None:
    task = admin.post("/tasks", {"name": "t"}).json_body
    [lease] = claim(worker)
    item = result(lease, result={"n": 1})
    assert sync(worker, item)["accepted"] == [task["id"]]
    Recorder(services.queue, services.store, "t").drain()
    before = (admin.get(f"/tasks/{task['id']}").json_body, stats(services))
    # The same outcome again (say, the answer was lost): accepted, nothing changes.
    assert sync(worker, item, item) == {"accepted": [task["id"]] * 2, "rejected": [], "created": []}
    Recorder(services.queue, services.store, "t").drain()
    assert (admin.get(f"/tasks/{task['id']}").json_body, stats(services)) == before
    # A different outcome from the same lease is a refused duplicate.
    other = sync(worker, result(lease, result={"n": 2}))
    assert other["rejected"] == [{"id": task["id"], "reason": "already_finished"}]
    assert stats(services)["duplicates"] == 1


def test_first_outcome_wins_and_late_outcomes(
    admin: Http, worker: Http, services: Services
) -> None:
    task = admin.post("/tasks", {"name": "t", "backoff": {"base_seconds": 0}}).json_body
    r = worker.post("/tasks/claim", {"worker_id": "w1", "queues": ["default"], "lease_seconds": 1})
    [old] = r.json_body["tasks"]
    # The lease expires unnoticed; the result, late, is still accepted (nobody finished).
    services.redis.zadd(services.keys.queue("default").running, {task["id"]: 0})
    services.queue.reap("default")
    [new] = claim(worker)
    assert new["fence"] == 2 and new["attempt"] == 2
    assert sync(worker, result(old, result="late"))["accepted"] == [task["id"]]
    refused = sync(worker, result(new, result="second"), worker_id="w2")
    assert refused["rejected"] == [{"id": task["id"], "reason": "already_finished"}]
    assert admin.get(f"/tasks/{task['id']}").json_body["result"] == "late"


def test_sync_rejects_bad_items_one_by_one(admin: Http, worker: Http) -> None:
    task = admin.post("/tasks", {"name": "t"}).json_body
    [lease] = claim(worker)
    canceled = admin.post("/tasks", {"name": "t"}).json_body
    admin.post(f"/tasks/{canceled['id']}/cancel")
    reply = sync(
        worker,
        {"id": str(uuid.uuid4()), "lease_token": "x", "status": "succeeded"},
        {"id": "not-a-uuid", "lease_token": "x", "status": "succeeded"},
        {"id": task["id"], "lease_token": lease["lease_token"], "status": "maybe"},
        {"id": task["id"], "lease_token": "forged", "status": "succeeded"},
        {"id": canceled["id"], "lease_token": "x", "status": "succeeded"},
        {
            "id": task["id"],
            "lease_token": lease["lease_token"],
            "status": "succeeded",
            "result": {"bad": "nul\u0000"},
        },
        result(lease, result={"ok": True}),
    )
    assert reply["accepted"] == [task["id"]]
    reasons = [r["reason"] for r in reply["rejected"]]
    assert reasons == ["not_found", "not_found", "invalid", "invalid", "lease_lost", "canceled"]


def test_sync_creates_offline_tasks_once(worker: Http, admin: Http) -> None:
    created = [
        {"name": "offline", "idempotency_key": "w1-1"},
        {"name": "offline", "idempotency_key": "w1-2", "priority": 99},
        {"name": "offline"},
    ]
    first = sync(worker, created=created)
    assert [t["idempotency_key"] for t in first["created"]] == ["w1-1"]
    assert [(r["index"], r["reason"]) for r in first["rejected"]] == [
        (1, "invalid"),
        (2, "invalid"),
    ]
    again = sync(worker, created=created[:1])
    assert again["created"][0]["id"] == first["created"][0]["id"]
    clash = sync(
        worker,
        created=[
            {"name": "other", "idempotency_key": "w1-1"},
            {"name": "x", "idempotency_key": "w1-3"},
        ],
    )
    assert [r["reason"] for r in clash["rejected"]] == ["conflict"]
    assert [t["idempotency_key"] for t in clash["created"]] == ["w1-3"]
    assert len(admin.get("/tasks").json_body["tasks"]) == 2


def test_sync_body_errors_are_400(worker: Http) -> None:
    for bad in ({"results": []}, {"worker_id": "w", "results": {}}, {"worker_id": "w", "x": 1}):
        assert_error(worker.post("/tasks/sync", bad), 400, "validation_error")
    assert_error(worker.post("/tasks/sync", [1]), 400, "invalid_json")


def test_worker_reads_only_a_task_it_holds(admin: Http, worker: Http) -> None:
    task = admin.post("/tasks", {"name": "t"}).json_body
    path = f"/tasks/{task['id']}"
    assert_error(worker.get(path), 403, "forbidden")
    [lease] = claim(worker)
    assert_error(worker.get(path, headers={"X-Lease-Token": "nope"}), 403, "forbidden")
    held = worker.get(path, headers={"X-Lease-Token": lease["lease_token"]})
    assert held.status_code == 200 and held.json_body["id"] == task["id"]
    sync(worker, result(lease))
    assert_error(
        worker.get(path, headers={"X-Lease-Token": lease["lease_token"]}), 403, "forbidden"
    )


def test_release_gives_the_task_back_and_refuses_foreign_tokens(
    admin: Http, worker: Http, services: Services
) -> None:
    task = admin.post("/tasks", {"name": "t"}).json_body
    [lease] = claim(worker)
    path = f"/tasks/{task['id']}/release"
    assert_error(worker.post(path, {"lease_token": "not-yours:1"}), 409, "conflict")
    assert_error(worker.post(path, {}), 400, "validation_error")
    assert_error(
        admin.post(f"/tasks/{uuid.uuid4()}/release", {"lease_token": "x"}), 404, "not_found"
    )
    r = worker.post(path, {"lease_token": lease["lease_token"]})
    assert r.status_code == 200 and r.json_body == {"released": True}
    live = services.queue.task_hash("default", task["id"]) or {}
    assert (live["st"], live["att"]) == ("queued", "0")
    assert_error(worker.post(path, {"lease_token": lease["lease_token"]}), 409, "conflict")


def test_sync_failure_with_a_chosen_retry_delay(
    admin: Http, worker: Http, services: Services
) -> None:
    task = admin.post("/tasks", {"name": "t"}).json_body
    [lease] = claim(worker)
    before = services.queue.clock.now_ms()
    reply = sync(worker, result(lease, "failed", error="later", retry_delay_seconds=120))
    assert reply["accepted"] == [task["id"]]
    score = services.redis.zscore(services.keys.queue("default").retrying, task["id"])
    assert score is not None and before + 119_000 <= score <= before + 125_000
    bad = sync(worker, result(lease, "failed", retry_delay_seconds=-1))
    assert bad["rejected"] and bad["rejected"][0]["id"] == task["id"]


def test_queue_webhook_default_is_set_shown_and_cleared(admin: Http) -> None:
    admin.post("/tasks", {"name": "t", "queue": "hooks"})
    r = admin.patch("/queues/hooks", {"webhook_url": "https://example.test/hook"})
    assert r.status_code == 200 and r.json_body["webhook_url"] == "https://example.test/hook"
    [q] = [q for q in admin.get("/queues").json_body["queues"] if q["name"] == "hooks"]
    assert q["webhook_url"] == "https://example.test/hook"
    assert_error(admin.patch("/queues/hooks", {"webhook_url": "ftp://x"}), 400, "validation_error")
    assert admin.patch("/queues/hooks", {"webhook_url": None}).json_body["webhook_url"] is None


def test_progress_is_reported_by_the_holder_and_shown_with_the_task(
    admin: Http, worker: Http, services: Services
) -> None:
    task = admin.post("/tasks", {"name": "t"}).json_body
    assert admin.get(f"/tasks/{task['id']}").json_body["progress"] is None
    [lease] = claim(worker)
    path = f"/tasks/{task['id']}/progress"
    body = {"lease_token": lease["lease_token"], "fraction": 0.4, "message": "4 of 10 pages"}
    first = worker.post(path, body)
    assert first.status_code == 200 and first.json_body == {"recorded": True}
    # Within the second: kept (the task shows it) but not recorded as an event yet.
    second = worker.post(path, {"lease_token": lease["lease_token"], "fraction": 0.5})
    assert second.status_code == 200
    got = admin.get(f"/tasks/{task['id']}").json_body
    assert (got["progress"]["fraction"], got["progress"]["message"]) == (0.5, "")
    assert got["progress"]["at"].endswith("+00:00")
    Recorder(services.queue, services.store, "t").drain()
    history = admin.get(f"/tasks/{task['id']}").json_body["history"]
    recorded = [e for e in history if e["event"] == "progress"]
    assert recorded[0]["progress"]["message"] == "4 of 10 pages"
    assert recorded[0]["progress"]["fraction"] == 0.4
    assert len(recorded) == 1 + second.json_body["recorded"]
    # Anyone but the holder is refused in the documented shape.
    stale = {**body, "lease_token": "not-the-lease"}
    assert_error(worker.post(path, stale), 409, "conflict")
    unknown = f"/tasks/{uuid.uuid4()}/progress"
    assert_error(worker.post(unknown, body), 404, "not_found")
    for bad in (
        {**body, "fraction": 1.5},
        {**body, "fraction": -0.1},
        {**body, "fraction": True},
        {"lease_token": lease["lease_token"]},
        {**body, "message": "x" * 1001},
        {**body, "message": 7},
        {**body, "message": "a\u0000b"},
        {**body, "percent": 40},
    ):
        assert_error(worker.post(path, bad), 400, "validation_error")
    sync(worker, result(lease))
    assert_error(worker.post(path, body), 409, "conflict")  # finished
