"""A queue's durability: "record" (the row commits before the create returns) and
"queue" (accepted once the enqueue script ran in Redis; the recorder writes the row)."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from chalicelib.core.errors import ValidationError
from chalicelib.core.models import Durability, Outcome
from chalicelib.queue.scripts import DURABILITY_TTL_S
from chalicelib.service.deps import Services
from chalicelib.service.queues import Queues
from chalicelib.service.recorder import GROUP, ROWLESS_GRACE_MS, Recorder

#: Fields a task answer has that differ between two tasks created from the same body.
OWN = {"id", "created_at", "run_at", "history"}


def _queue_mode(services: Services, queue: str = "default") -> None:
    Queues(services.queue, services.store).configure(queue, {}, durability=Durability.QUEUE)


def _row(services: Services, task_id: str) -> dict[str, object] | None:
    return services.store.get_task(task_id)


def test_default_is_record_and_the_setting_shows_and_reverts(services: Services) -> None:
    queues = Queues(services.queue, services.store)
    services.tasks.enqueue("t", queue="q1")
    assert queues.get("q1")["durability"] == "record"
    queues.configure("q1", {}, durability=Durability.QUEUE)
    assert queues.get("q1")["durability"] == "queue"
    assert services.queue.durability("q1") == Durability.QUEUE
    queues.configure("q1", {}, durability=Durability.RECORD)
    assert queues.get("q1")["durability"] == "record"
    assert services.queue.durability("q1") == Durability.RECORD


def test_record_mode_commits_the_row_before_returning(services: Services) -> None:
    task = services.tasks.enqueue("t", {"a": 1})
    assert _row(services, task["id"]) is not None


def test_queue_mode_accepts_in_redis_and_the_recorder_writes_the_same_row(
    services: Services,
) -> None:
    body = {
        "priority": 7,
        "max_attempts": 4,
        "timeout_seconds": 33,
        "lock_key": "lk-1",
        "webhook_url": "https://example.com/hook",
        "backoff": {"base_seconds": 2, "factor": 3, "max_seconds": 60, "jitter": False},
    }
    recorded = services.tasks.enqueue("t", {"a": [1, "é"]}, **body)
    _queue_mode(services)
    fast = services.tasks.enqueue("t", {"a": [1, "é"]}, **body)
    assert _row(services, fast["id"]) is None  # not yet: the recorder writes it

    # Readable at once, from Redis, with the same fields a recorded task shows.
    seen = services.tasks.get(fast["id"])
    assert seen["status"] == "queued"
    assert [e["event"] for e in seen["history"]] == ["created", "queued"]
    want = services.tasks.get(recorded["id"])
    assert {k: v for k, v in seen.items() if k not in OWN} == {
        k: v for k, v in want.items() if k not in OWN
    }
    assert seen["created_at"] == fast["created_at"]

    Recorder(services.queue, services.store, "test").drain()
    row = _row(services, fast["id"])
    assert row is not None
    after = services.tasks.get(fast["id"])
    assert after == seen  # recorded: the same answer
    assert row["version"] == services.queue.live("default", fast["id"]).version  # type: ignore[union-attr]


def test_a_task_created_and_finished_within_one_round_is_recorded_once(
    services: Services,
) -> None:
    _queue_mode(services)
    task = services.tasks.enqueue("t", {"x": 1})
    [lease] = services.queue.claim(["default"], "w1", 1, 30_000).leases
    services.queue.report_many([Outcome("default", lease.task_id, lease.lease_token, True, "42")])
    Recorder(services.queue, services.store, "test").drain()

    got = services.tasks.get(task["id"])
    assert got["status"] == "succeeded"
    assert got["result"] == 42
    assert [e["event"] for e in got["history"]] == ["created", "queued", "claimed", "succeeded"]
    with services.store.connection() as conn:
        n = conn.execute(
            "SELECT count(*) AS n FROM dtq_task_events WHERE task_id = %s", (task["id"],)
        ).fetchone()
    assert n is not None and n["n"] == 2  # claimed, succeeded: creation is the row's own


def test_a_batch_in_queue_mode_and_every_id_read_before_and_after_recording(
    services: Services,
) -> None:
    _queue_mode(services, "bulk")
    tasks = services.tasks.enqueue_many(
        [{"name": "b", "queue": "bulk", "payload": {"i": i}} for i in range(1500)]
    )
    ids = [t["id"] for t in tasks]
    assert services.store.get_tasks(ids) == []
    assert services.tasks.get(ids[1234], history=False)["payload"] == {"i": 1234}
    Recorder(services.queue, services.store, "test").drain()
    rows = services.store.get_tasks(ids)
    assert sorted(str(r["id"]) for r in rows) == sorted(ids)
    assert {r["payload"]["i"] for r in rows} == set(range(1500))


def test_a_batch_over_queues_of_both_modes_takes_the_record_path(services: Services) -> None:
    _queue_mode(services, "fast")
    tasks = services.tasks.enqueue_many(
        [{"name": "b", "queue": "fast"}, {"name": "b", "queue": "slow"}]
    )
    assert len(services.store.get_tasks([t["id"] for t in tasks])) == 2


def test_idempotent_and_scheduled_creates_keep_the_record_path(services: Services) -> None:
    _queue_mode(services)
    keyed = services.tasks.enqueue("t", idempotency_key="k-1")
    assert _row(services, keyed["id"]) is not None
    again = services.tasks.enqueue("t", idempotency_key="k-1")
    assert again["id"] == keyed["id"]
    later = services.tasks.enqueue("t", delay_seconds=60)
    assert later["status"] == "scheduled"
    Recorder(services.queue, services.store, "test").drain()
    row = _row(services, later["id"])
    assert row is not None and row["status"] == "scheduled" and row["created_scheduled"]


def test_cancel_and_progress_find_an_unrecorded_task(services: Services) -> None:
    _queue_mode(services)
    queued = services.tasks.enqueue("t")
    task, done = services.tasks.cancel(queued["id"])
    assert done and task["status"] == "canceled"
    running = services.tasks.enqueue("t")
    [lease] = services.queue.claim(["default"], "w1", 1, 30_000).leases
    assert lease.task_id == running["id"]
    assert services.tasks.holds(running["id"], lease.lease_token)
    services.tasks.progress(running["id"], lease.lease_token, 0.5, "half")
    assert services.tasks.get(running["id"])["progress"]["fraction"] == 0.5
    Recorder(services.queue, services.store, "test").drain()
    row = _row(services, queued["id"])
    assert row is not None and row["status"] == "canceled"


def test_another_recorders_uncommitted_round_holds_the_later_events_back(
    services: Services,
) -> None:
    """Recorder a has read the round with the task's `created` event and not committed it
    when recorder b records the task's claim and success: b keeps those entries pending,
    and records them once the row exists."""
    _queue_mode(services)
    a = Recorder(services.queue, services.store, "a")
    b = Recorder(services.queue, services.store, "b", hold_retry_s=0)
    assert a.drain() == 0  # creates the consumer group
    task = services.tasks.enqueue("t")
    stream = services.keys.queue("default").events
    # a's round: read, not yet committed
    taken = services.redis.xreadgroup(GROUP, "a", {stream: ">"}, count=1)
    assert len(taken[0][1]) == 1
    [lease] = services.queue.claim(["default"], "w1", 1, 30_000).leases
    services.queue.report_many([Outcome("default", lease.task_id, lease.lease_token, True, "1")])

    assert b.drain_once() == 0  # nothing it read could be recorded yet
    assert _row(services, task["id"]) is None
    pending = services.redis.xpending(stream, GROUP)
    assert pending["pending"] == 3  # a's one, b's two

    assert a.drain_once() == 1  # the created event: the row
    row = _row(services, task["id"])
    assert row is not None and row["status"] == "queued"
    assert b.drain_once() == 2  # the held entries, as a replay
    row = _row(services, task["id"])
    assert row is not None and row["status"] == "succeeded" and row["result"] == 1
    assert services.redis.xlen(stream) == 0


def test_an_entry_naming_a_task_without_a_row_is_parked_after_the_grace(
    services: Services,
) -> None:
    """Events of a task the record never gets (an anomaly) cannot hold the stream up: a
    young entry waits, an old one is parked and the rest of its round is recorded."""
    recorder = Recorder(services.queue, services.store, "test")
    services.tasks.enqueue("t", queue="orph")
    recorder.drain()
    stream = services.keys.queue("orph").events
    ghost = "0190a0a0-0000-7000-8000-000000000001"
    event = (
        f'[{{"id":"{ghost}","ev":"claimed","st":"running","v":1,"att":1,"fence":1,'
        f'"at":{int(time.time() * 1000)},"w":"w"}}]'
    )
    services.redis.xadd(stream, {"d": event})
    assert recorder.drain_once() == 0
    assert services.redis.xlen(stream) == 1
    assert services.store.parked(queue="orph") == []
    # The waiting entry does not hold up the ones written after it.
    [lease] = services.queue.claim(["orph"], "w1", 1, 30_000).leases
    assert recorder.drain_once() == 1
    row = _row(services, lease.task_id)
    assert row is not None and row["status"] == "running"
    assert services.redis.xlen(stream) == 1  # the waiting one

    # The same entry, as if written past the grace: a stream id is its time in ms.
    services.redis.delete(stream)
    old = int(time.time() * 1000) - ROWLESS_GRACE_MS - 1000
    services.redis.xadd(stream, {"d": event}, id=f"{old}-0")
    services.redis.xgroup_create(stream, GROUP, id="0")
    recorder = Recorder(services.queue, services.store, "test2")
    assert recorder.drain_once() == 1
    [parked] = services.store.parked(queue="orph")
    assert ghost in parked["error"]
    assert services.redis.xlen(stream) == 0


def test_a_change_made_elsewhere_is_followed_within_the_ttl(services: Services) -> None:
    services.tasks.enqueue("t")
    assert services.queue.durability("default") == Durability.RECORD
    other = redis.Redis.from_url(services.settings.redis_url)
    other.hset(services.keys.queue("default").meta, "dur", "queue")
    deadline = time.monotonic() + DURABILITY_TTL_S + 1.0
    while services.queue.durability("default") != Durability.QUEUE:
        assert time.monotonic() < deadline, "the new durability was never read"
    task = services.tasks.enqueue("t")
    assert _row(services, task["id"]) is None


def test_a_batch_with_a_malformed_queue_is_refused_whatever_the_modes(services: Services) -> None:
    _queue_mode(services)
    for bad in ({}, [], 7):
        with pytest.raises(ValidationError) as err:
            services.tasks.enqueue_many([{"name": "ok"}, {"name": "b", "queue": bad}])
        assert "tasks[1].queue" in str(err.value.details)
    assert services.queue.depths(["default"])["default"]["queued"] == 0


def test_concurrent_single_creates_share_script_calls_and_each_is_accepted(
    services: Services,
) -> None:
    _queue_mode(services)
    start = threading.Barrier(8)
    made: list[str] = []
    lock = threading.Lock()

    def create() -> None:
        start.wait()
        for i in range(25):
            task = services.tasks.enqueue("t", {"i": i})
            with lock:
                made.append(task["id"])

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 200
    assert services.queue.depths(["default"])["default"]["queued"] == 200
    Recorder(services.queue, services.store, "test").drain()
    assert len(services.store.get_tasks(made)) == 200
