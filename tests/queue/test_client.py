"""The Python client API: idempotency, batches, and Redis outages."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import redis

from chalicelib.core.errors import Conflict, PayloadTooLarge, Unavailable, ValidationError
from chalicelib.core.settings import Settings
from chalicelib.core.taskspec import parse_task
from chalicelib.service import deps
from chalicelib.service.deps import Services
from chalicelib.service.recorder import Recorder
from chalicelib.service.recover import restore_missing
from chalicelib.service.tasks import STREAM_CHUNK, _row_to_new_task


def test_same_idempotency_key_and_body_returns_the_original(services: Services) -> None:
    spec = parse_task(
        {"name": "t", "payload": {"a": 1}, "idempotency_key": "k1"}, max_payload_bytes=1000
    )
    [(first, created_first)] = services.tasks.create([spec])
    [(again, created)] = services.tasks.create([spec])
    assert created_first and again["id"] == first["id"]
    assert services.redis.zcard(services.keys.queue("default").ready) == 1
    assert not created


def test_idempotency_key_with_another_body_conflicts(services: Services) -> None:
    services.tasks.enqueue("t", {"a": 1}, idempotency_key="k2")
    with pytest.raises(Conflict):
        services.tasks.enqueue("t", {"a": 2}, idempotency_key="k2")


def test_concurrent_identical_requests_create_exactly_one_task(services: Services) -> None:
    spec = parse_task({"name": "t", "idempotency_key": "race"}, max_payload_bytes=1000)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def go() -> None:
        barrier.wait()
        [(_, created)] = services.tasks.create([spec])
        results.append(created)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert services.redis.zcard(services.keys.queue("default").ready) == 1


@pytest.mark.parametrize("bad", [2, STREAM_CHUNK * 2 + 5])
def test_batch_is_all_or_nothing_and_names_the_bad_index(services: Services, bad: int) -> None:
    # A bad body after the first chunks: those were already sent to the COPY.
    bodies: list[dict[str, Any]] = [{"name": "ok"}] * (bad + 10)
    bodies[bad] = {"name": "bad name!"}
    with pytest.raises(ValidationError) as err:
        services.tasks.enqueue_many(bodies)
    assert err.value.details[0]["field"] == f"tasks[{bad}].name"
    assert services.tasks.list()[0] == []
    assert services.redis.zcard(services.keys.queue("default").ready) == 0
    assert len(services.tasks.enqueue_many([{"name": "ok"}] * (bad + 10))) == bad + 10


def test_batch_with_a_conflicting_idempotency_key_stores_nothing(services: Services) -> None:
    services.tasks.enqueue("t", {"v": 1}, idempotency_key="dup")
    with pytest.raises(Conflict):
        services.tasks.enqueue_many(
            [{"name": "t"}, {"name": "t", "payload": {"v": 2}, "idempotency_key": "dup"}]
        )
    tasks, _ = services.tasks.list()
    assert len(tasks) == 1


def test_payload_over_the_limit_is_refused(services: Services) -> None:
    with pytest.raises(PayloadTooLarge):
        services.tasks.enqueue("t", {"blob": "x" * 300_000})
    assert services.tasks.list()[0] == []


def test_list_pages_newest_first_with_filters(services: Services) -> None:
    ids = [services.tasks.enqueue("t", queue="a" if i % 2 else "b")["id"] for i in range(7)]
    page1, cursor = services.tasks.list(limit=3)
    assert [t["id"] for t in page1] == ids[::-1][:3]
    page2, cursor2 = services.tasks.list(limit=3, cursor=cursor)
    page3, cursor3 = services.tasks.list(limit=3, cursor=cursor2)
    assert [t["id"] for t in page2 + page3] == ids[::-1][3:]
    assert cursor3 is None
    only_a, _ = services.tasks.list(queue="a", limit=50)
    assert {t["id"] for t in only_a} == {ids[i] for i in range(7) if i % 2}
    with pytest.raises(ValidationError):
        services.tasks.list(cursor="garbage")


def test_redis_down_task_is_recorded_then_dispatched_by_the_reconciler(
    settings: Settings, services: Services
) -> None:
    down = deps.build(
        Settings(
            **{**settings.__dict__, "redis_url": "redis://127.0.0.1:1/0", "io_timeout_seconds": 0.3}
        )
    )
    try:
        task = down.tasks.enqueue("t", {"n": 1})
    finally:
        down.close()
    assert task["status"] == "queued"
    assert services.store.get_task(task["id"]) is not None  # committed before the reply
    assert services.queue.claim(["default"], "w", 5, 30_000).leases == []
    assert restore_missing(services.tasks).restored == 1
    [lease] = services.queue.claim(["default"], "w", 5, 30_000).leases
    assert lease.task_id == task["id"] and lease.payload == {"n": 1}


def test_task_json_has_every_documented_field(services: Services) -> None:
    task = services.tasks.get(services.tasks.enqueue("t", {"x": 1})["id"])
    for field in (
        "id",
        "name",
        "queue",
        "priority",
        "payload",
        "status",
        "attempts",
        "max_attempts",
        "timeout_seconds",
        "backoff",
        "idempotency_key",
        "lock_key",
        "schedule_id",
        "worker_id",
        "run_at",
        "created_at",
        "started_at",
        "finished_at",
        "result",
        "error",
        "history",
    ):
        assert field in task
    assert task["backoff"] == {
        "base_seconds": 1.0,
        "factor": 2.0,
        "max_seconds": 3600.0,
        "jitter": True,
    }
    assert task["created_at"].endswith("+00:00")


def test_concurrent_single_creates_share_commits_and_are_all_durable(services: Services) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def go(i: int) -> None:
        for j in range(25):
            task = services.tasks.enqueue("t", {"i": i, "j": j})
            with lock:
                ids.append(task["id"])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 200
    assert len(services.store.get_tasks(ids)) == 200  # every reply came after its commit
    assert services.redis.zcard(services.keys.queue("default").ready) == 200


def test_a_failed_shared_commit_fails_its_callers_and_stores_nothing(settings: Settings) -> None:
    down = deps.build(
        Settings(
            **{
                **settings.__dict__,
                "database_url": "postgresql://postgres@127.0.0.1:1/x",
                "io_timeout_seconds": 0.3,
            }
        )
    )
    try:
        with pytest.raises(Unavailable):
            down.tasks.enqueue("t")
        # Read with a plain client: `down` would first check this Redis against its
        # (unreachable) record and refuse to use it.
        plain = redis.Redis.from_url(settings.redis_url)
        assert plain.zcard(down.keys.queue("default").ready) == 0
        plain.close()
    finally:
        down.close()


def test_a_batch_over_several_queues_and_chunks_lands_each_task_once(services: Services) -> None:
    # 2,500 tasks interleaved over two queues: more than one script call per queue.
    bodies: list[dict[str, Any]] = [
        {"name": "t", "queue": "qa" if i % 2 else "qb", "payload": {"i": i}, "priority": i % 10}
        for i in range(2_500)
    ]
    bodies[7]["lock_key"] = "lk"
    created = services.tasks.enqueue_many(bodies)
    qa, qb = services.keys.queue("qa"), services.keys.queue("qb")
    assert services.redis.zcard(qa.ready) == 1_250 and services.redis.zcard(qb.ready) == 1_250
    for body, task in zip(bodies, created, strict=True):
        live = services.queue.task_hash(body["queue"], task["id"])
        assert live is not None and live["st"] == "queued" and live["pri"] == str(body["priority"])
        assert json.loads(live["payload"]) == body["payload"]
        assert live.get("lk") == body.get("lock_key")
    # Dispatching recorded tasks again (as the reconciler may) adds nothing.
    rows = [services.store.get_task(t["id"]) for t in created[:1_200]]
    again = services.queue.enqueue_many([_row_to_new_task(r) for r in rows if r is not None])
    assert again == [False] * 1_200
    assert services.redis.zcard(qa.ready) + services.redis.zcard(qb.ready) == 2_500


def test_a_batch_keeps_every_character_of_its_text_fields(services: Services) -> None:
    # A batch is written as COPY text, where backslash, tab, newline and CR are escapes.
    tricky = 'back\\slash \\N tab\there new\nline cr\r "quote" é 😀'
    bodies = [
        {"name": "t", "payload": {"text": tricky, tricky: [tricky]}, "lock_key": tricky},
        {"name": "t", "payload": {"n": 1}, "webhook_url": "http://example.com/a\\b?q=\\N"},
    ]
    created = services.tasks.enqueue_many(bodies)
    stored = [services.store.get_task(t["id"]) for t in created]
    assert stored[0] is not None and stored[1] is not None
    assert stored[0]["payload"] == {"text": tricky, tricky: [tricky]}
    assert stored[0]["lock_key"] == tricky and stored[0]["webhook_url"] is None
    assert stored[1]["webhook_url"] == "http://example.com/a\\b?q=\\N"
    assert stored[1]["lock_key"] is None and stored[1]["payload"] == {"n": 1}
    assert [s["created_at"] for s in stored] == [s["run_at"] for s in stored]


def test_a_read_shows_the_event_behind_its_status_recorded_or_not(services: Services) -> None:
    # docs/api.md, "Consistency of reads": status (from Redis) and history (from the
    # record, plus what is still in the event stream) agree in one answer.
    task = services.tasks.enqueue("t", {}, max_attempts=2)
    [lease] = services.queue.claim(["default"], "w", 1, 30_000).leases
    services.queue.fail(
        "default", lease.task_id, lease.lease_token, "boom", retry_delay_ms=0, worker_id="w"
    )
    [lease] = services.queue.claim(["default"], "w", 1, 30_000).leases  # the retry is due
    services.queue.complete("default", lease.task_id, lease.lease_token, '{"ok": 1}', "w")
    before = services.tasks.get(task["id"])
    assert before["status"] == "succeeded"
    names = [e["event"] for e in before["history"]]
    assert names == [
        "created",
        "queued",
        "claimed",
        "failed",
        "retrying",
        "queued",
        "claimed",
        "succeeded",
    ], names
    failed = next(e for e in before["history"] if e["event"] == "failed")
    assert failed["error"] == "boom" and failed["worker_id"] == "w"
    Recorder(services.queue, services.store, "t").drain()
    after = services.tasks.get(task["id"])
    assert [e["event"] for e in after["history"]] == names  # the record says the same
    assert [e["at"] for e in after["history"]] == [e["at"] for e in before["history"]]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"delay_seconds": 10 * 365 * 86400 + 1}, "delay_seconds"),
        ({"backoff": {"base_seconds": 1e15}}, "backoff.base_seconds"),
        ({"payload": {"note": "nul\x00"}}, "payload.note"),
        ({"lock_key": "a\x00b"}, "lock_key"),
        ({"prority": 3}, "prority"),
    ],
)
def test_the_python_client_refuses_what_the_api_refuses(
    services: Services, options: dict[str, Any], field: str
) -> None:
    """One task check for every entry point: the in-process client once skipped the
    bounds and the storable-text checks that only the HTTP path made."""
    payload = options.pop("payload", None)
    with pytest.raises(ValidationError) as err:
        services.tasks.enqueue("t", payload, **options)
    assert field in [d["field"] for d in err.value.details]
    with pytest.raises(ValidationError):
        services.tasks.enqueue_many([{"name": "t", "payload": payload or {}, **options}])
    assert services.redis.zcard(services.keys.queue("default").ready) == 0


def test_integral_floats_are_accepted_by_every_entry_point(services: Services) -> None:
    task = services.tasks.enqueue("t", {}, priority=7.0)
    assert task["priority"] == 7
    [batched] = services.tasks.enqueue_many([{"name": "t", "max_attempts": 3.0}])
    assert batched["max_attempts"] == 3
