"""The HTTP API on the three-node Redis Cluster, with every request touching queues on
different nodes: create, batch create, claim over HTTP, outcomes, cancel, retry,
dead-letter replay, queue settings, and metrics gathered from every shard."""

from __future__ import annotations

from typing import Any

from chalicelib.service.deps import Services
from chalicelib.service.recorder import Recorder
from tests.api.conftest import Http
from tests.cluster.fixtures import QUEUES


def claim(worker: Http, queues: list[str], n: int) -> list[dict[str, Any]]:
    r = worker.post("/tasks/claim", {"worker_id": "w1", "queues": queues, "max": n})
    assert r.status_code == 200, r.body
    return list(r.json_body["tasks"])


def sync(worker: Http, *results: dict[str, Any]) -> dict[str, Any]:
    r = worker.post("/tasks/sync", {"worker_id": "w1", "results": list(results)})
    assert r.status_code == 200, r.body
    return dict(r.json_body)


def outcome(lease: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
    return {"id": lease["id"], "lease_token": lease["lease_token"], "status": status, **extra}


def test_create_batch_claim_and_report_across_shards(
    admin: Http, worker: Http, services: Services
) -> None:
    singles = [admin.post("/tasks", {"name": "t", "queue": q}).json_body for q in QUEUES]
    assert {t["queue"] for t in singles} == set(QUEUES)
    batch = [{"name": "t", "queue": q, "priority": i % 10} for i in range(40) for q in QUEUES]
    r = admin.post("/tasks/batch", {"tasks": batch})
    assert r.status_code == 201, r.body
    created = [*singles, *r.json_body["tasks"]]
    for task in created:
        assert admin.get(f"/tasks/{task['id']}").json_body["status"] == "queued"
    # The queue whose head is best first (heads read from three nodes), priority first
    # within it: each queue has four tasks of priority 9.
    leases = claim(worker, QUEUES, 4)
    assert len(leases) == 4 and {le["priority"] for le in leases} == {9}
    leases += claim(worker, QUEUES, 100) + claim(worker, QUEUES, 100)
    assert sorted(le["id"] for le in leases) == sorted(t["id"] for t in created)
    assert claim(worker, QUEUES, 100) == []
    # One sync with outcomes of every queue: one script call per queue, on its node.
    results = [outcome(le, "succeeded", result={"i": i}) for i, le in enumerate(leases)]
    assert len(sync(worker, *results)["accepted"]) == len(leases)
    Recorder(services.queue, services.store, "test").drain()
    for task in created[:: len(QUEUES) + 1]:
        assert admin.get(f"/tasks/{task['id']}").json_body["status"] == "succeeded"


def test_cancel_retry_and_dead_letter_replay_across_shards(
    admin: Http, worker: Http, services: Services
) -> None:
    doomed = {
        q: admin.post("/tasks", {"name": "t", "queue": q, "max_attempts": 1}).json_body["id"]
        for q in QUEUES
    }
    leases = claim(worker, QUEUES, 10)
    sync(worker, *(outcome(le, "failed", error="boom") for le in leases))
    for task_id in doomed.values():
        assert admin.get(f"/tasks/{task_id}").json_body["status"] == "dead"
    Recorder(services.queue, services.store, "test").drain()  # the list is the record's
    listed = admin.get("/dead-letter").json_body["tasks"]
    assert {t["id"] for t in listed} == set(doomed.values())
    # Retry one, replay one by id and the rest queue by queue: each on its own node.
    r = admin.post(f"/tasks/{doomed['alpha']}/retry")
    assert r.status_code == 200 and r.json_body["status"] == "queued"
    r = admin.post("/dead-letter/replay", {"ids": [doomed["beta"]]})
    assert r.json_body == {"replayed": 1}
    for q in ("gamma", "delta"):
        assert admin.post("/dead-letter/replay", {"queue": q}).json_body == {"replayed": 1}
    assert {le["id"] for le in claim(worker, QUEUES, 10)} == set(doomed.values())

    queued = admin.post("/tasks", {"name": "t", "queue": "beta"}).json_body
    r = admin.post(f"/tasks/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json_body["status"] == "canceled"
    running = admin.post("/tasks", {"name": "t", "queue": "delta"}).json_body
    [lease] = claim(worker, ["delta"], 1)
    r = admin.post(f"/tasks/{running['id']}/cancel")
    assert r.status_code == 202 and r.json_body["cancel_requested"] is True
    extended = worker.post(
        f"/tasks/{running['id']}/lease", {"lease_token": lease["lease_token"], "extend_seconds": 30}
    )
    assert extended.json_body["cancel_requested"] is True
    assert admin.get(f"/tasks/{running['id']}").json_body["status"] == "canceled"
    r = admin.post(f"/tasks/{queued['id']}/retry")
    assert r.status_code == 200 and r.json_body["status"] == "queued"


def test_queue_settings_wait_and_metrics_across_shards(
    admin: Http, worker: Http, anon: Http
) -> None:
    for i, q in enumerate(QUEUES):
        for _ in range(i + 1):
            admin.post("/tasks", {"name": "t", "queue": q})
    r = admin.patch("/queues/beta", {"paused": True, "concurrency": 2})
    assert r.status_code == 200 and (r.json_body["paused"], r.json_body["concurrency"]) == (True, 2)
    r = admin.patch("/queues/delta", {"rate_limit": {"per_second": 1, "burst": 1}})
    assert r.json_body["rate_limit"] == {"per_second": 1, "burst": 1}
    listed = {q["name"]: q for q in admin.get("/queues").json_body["queues"]}
    assert {q: listed[q]["depth"]["queued"] for q in QUEUES} == {
        "alpha": 1,
        "beta": 2,
        "gamma": 3,
        "delta": 4,
    }
    assert listed["beta"]["paused"] is True and listed["alpha"]["paused"] is False
    # beta is paused, delta rate-limited to one: 1 + 3 + 1 claimed, on three nodes.
    leases = claim(worker, QUEUES, 100)
    assert sorted(le["queue"] for le in leases) == ["alpha", "delta", "gamma", "gamma", "gamma"]
    sync(worker, *(outcome(le, "succeeded") for le in leases))
    r = worker.post("/tasks/wait", {"queues": QUEUES, "timeout_seconds": 0.05})
    assert r.status_code == 200

    families = {m["name"]: m for m in anon.get("/metrics?format=json").json_body["metrics"]}
    depth = {
        (s["labels"]["queue"], s["labels"]["status"]): s["value"]
        for s in families["task_queue_depth"]["samples"]
    }
    assert {q: depth[(q, "queued")] for q in QUEUES} == {
        "alpha": 0,
        "beta": 2,
        "gamma": 0,
        "delta": 3,
    }
    done = {s["labels"]["queue"]: s["value"] for s in families["task_throughput_total"]["samples"]}
    assert done == {"alpha": 1, "beta": 0, "gamma": 3, "delta": 1}
    text = anon.get("/metrics").body.decode()
    assert 'task_queue_depth{queue="delta",status="queued"} 3' in text
    health = anon.get("/health")
    assert health.status_code == 200 and health.json_body["checks"]["redis"]["status"] == "ok"
