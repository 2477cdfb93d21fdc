"""fail/backoff/dead, replay, cancel in every state, locks, pause, concurrency and rate
limits, against a real Redis."""

from __future__ import annotations

import time

import pytest

from chalicelib.core.errors import (
    AlreadyFinished,
    ConfigError,
    Conflict,
    InvalidTransition,
    TaskCanceled,
)
from chalicelib.core.models import Lease, TaskStatus
from chalicelib.queue.scripts import Code
from chalicelib.service.deps import Services
from tests.helpers import wait_until

NO_WAIT = {"base_seconds": 0, "factor": 1, "max_seconds": 0, "jitter": False}


def claim(svc: Services, n: int = 1, worker: str = "w1", lease_ms: int = 30_000) -> list[Lease]:
    return svc.queue.claim(["default"], worker, n, lease_ms).leases


def retry_score(svc: Services, task_id: str) -> float:
    score = svc.redis.zscore(svc.keys.queue("default").retrying, task_id)
    assert score is not None
    return float(score)


def test_failed_attempt_waits_for_exponential_backoff(services: Services) -> None:
    backoff = {"base_seconds": 10, "factor": 3, "max_seconds": 60, "jitter": False}
    services.tasks.enqueue("t", backoff=backoff, max_attempts=5)
    [lease] = claim(services)
    before = services.queue.clock.now_ms()
    assert (
        services.queue.fail("default", lease.task_id, lease.lease_token, "boom")
        == TaskStatus.RETRYING
    )
    after = services.queue.clock.now_ms()
    # attempt 1 → 10 s, on the Redis clock (a few ms of estimate error allowed)
    assert before + 10_000 - 50 <= retry_score(services, lease.task_id) <= after + 10_000 + 50
    live = services.queue.task_hash("default", lease.task_id)
    assert live is not None and live["st"] == "retrying" and live["err"] == "boom"
    assert claim(services) == []  # not before its backoff


def test_backoff_grows_by_factor_and_is_capped(services: Services) -> None:
    backoff = {"base_seconds": 0.001, "factor": 1000, "max_seconds": 2, "jitter": False}
    services.tasks.enqueue("t", backoff=backoff, max_attempts=5)
    [lease] = claim(services)
    services.queue.fail("default", lease.task_id, lease.lease_token, "1")  # 1 ms
    [lease] = wait_until(lambda: claim(services))
    now = services.queue.clock.now_ms()
    services.queue.fail("default", lease.task_id, lease.lease_token, "2")  # 1 s
    assert now + 1000 - 50 <= retry_score(services, lease.task_id) <= now + 1000 + 200
    services.redis.zadd(services.keys.queue("default").retrying, {lease.task_id: 0})  # due now
    [lease] = claim(services)
    now = services.queue.clock.now_ms()
    services.queue.fail("default", lease.task_id, lease.lease_token, "3")  # 1000 s → cap 2 s
    assert now + 2000 - 50 <= retry_score(services, lease.task_id) <= now + 2000 + 200


def test_full_jitter_stays_within_bounds(services: Services) -> None:
    backoff = {"base_seconds": 100, "factor": 2, "max_seconds": 3600, "jitter": True}
    services.tasks.enqueue_many([{"name": "t", "backoff": backoff} for _ in range(50)])
    scores = []
    for lease in claim(services, 50):
        now = services.queue.clock.now_ms()
        services.queue.fail("default", lease.task_id, lease.lease_token, "x")
        scores.append(retry_score(services, lease.task_id) - now)
    assert all(-50 <= s <= 100_000 + 50 for s in scores)
    assert len({int(s) for s in scores}) > 40  # really random, not one fixed delay


def test_handler_chosen_retry_delay_overrides_backoff(services: Services) -> None:
    services.tasks.enqueue(
        "t", backoff={"base_seconds": 1000, "factor": 2, "max_seconds": 3600, "jitter": False}
    )
    [lease] = claim(services)
    now = services.queue.clock.now_ms()
    services.queue.fail("default", lease.task_id, lease.lease_token, "later", retry_delay_ms=5000)
    assert now + 5000 - 50 <= retry_score(services, lease.task_id) <= now + 5000 + 200


def test_dead_after_max_attempts_then_replay(services: Services) -> None:
    task = services.tasks.enqueue("t", max_attempts=2, backoff=NO_WAIT)
    [lease] = claim(services)
    assert (
        services.queue.fail("default", lease.task_id, lease.lease_token, "a") == TaskStatus.RETRYING
    )
    [lease2] = wait_until(lambda: claim(services))
    assert lease2.attempt == 2
    assert (
        services.queue.fail("default", lease2.task_id, lease2.lease_token, "b") == TaskStatus.DEAD
    )
    qk = services.keys.queue("default")
    assert services.redis.zscore(qk.dead, task["id"]) is not None
    stats = services.queue.stats(["default"])["default"]
    assert (stats["failures"], stats["retries"], stats["dead"]) == (2, 1, 1)
    assert claim(services) == []
    with pytest.raises(AlreadyFinished):
        services.queue.complete("default", lease2.task_id, lease2.lease_token, "null")

    services.tasks.retry(task["id"])
    assert services.redis.zscore(qk.dead, task["id"]) is None
    [again] = claim(services)
    assert again.task_id == task["id"] and again.attempt == 1 and again.fence == 3
    with pytest.raises(InvalidTransition):
        services.tasks.retry(task["id"])  # running: not dead or canceled


def test_cancel_in_every_state(services: Services) -> None:
    c = services.tasks
    scheduled = c.enqueue("t", delay_seconds=3600)
    queued = c.enqueue("t")
    _, done = c.cancel(scheduled["id"])
    assert done and c.get(scheduled["id"])["status"] == "canceled"
    _, done = c.cancel(queued["id"])
    assert done and c.get(queued["id"])["status"] == "canceled"
    assert claim(services, 10) == []
    assert services.redis.zcard(services.keys.queue("default").scheduled) == 0

    retrying = c.enqueue(
        "t", backoff={"base_seconds": 3600, "factor": 1, "max_seconds": 3600, "jitter": False}
    )
    [lease] = claim(services)
    services.queue.fail("default", lease.task_id, lease.lease_token, "x")
    _, done = c.cancel(retrying["id"])
    assert done and c.get(retrying["id"])["status"] == "canceled"

    running = c.enqueue("t")
    [lease] = claim(services)
    task, done = c.cancel(running["id"])
    assert not done and task["status"] == "running" and task["cancel_requested"] is True
    _, canceled = services.queue.extend("default", lease.task_id, lease.lease_token, 30_000)
    assert canceled and c.get(running["id"])["status"] == "canceled"
    with pytest.raises(TaskCanceled):
        services.queue.complete("default", lease.task_id, lease.lease_token, "null")

    for terminal in (scheduled, queued, retrying, running):
        with pytest.raises(Conflict):
            c.cancel(terminal["id"])
    ok = c.enqueue("t")
    [lease] = claim(services)
    services.queue.complete("default", lease.task_id, lease.lease_token, "null")
    with pytest.raises(AlreadyFinished):
        c.cancel(ok["id"])


def test_outcome_of_a_cancel_requested_task_is_refused(services: Services) -> None:
    task = services.tasks.enqueue("t")
    [lease] = claim(services)
    services.tasks.cancel(task["id"])
    with pytest.raises(TaskCanceled):
        services.queue.complete("default", lease.task_id, lease.lease_token, '"too late"')
    got = services.tasks.get(task["id"])
    assert got["status"] == "canceled" and got["result"] is None


def test_canceled_task_can_be_retried(services: Services) -> None:
    task = services.tasks.enqueue("t")
    services.tasks.cancel(task["id"])
    assert services.tasks.retry(task["id"])["status"] == "queued"
    [lease] = claim(services)
    assert lease.task_id == task["id"]


def test_lock_key_allows_one_running_task_at_a_time(services: Services) -> None:
    c = services.tasks
    locked = [c.enqueue("t", lock_key="account:42", payload={"i": i})["id"] for i in range(3)]
    free = c.enqueue("t", priority=1)["id"]
    first = claim(services, 10)
    assert [lease.task_id for lease in first] == [locked[0], free]
    assert claim(services, 10) == []
    order = [locked[0]]
    holder = first[0]
    for _ in range(2):
        services.queue.complete("default", holder.task_id, holder.lease_token, "null")
        [holder] = claim(services, 10)
        order.append(holder.task_id)
        assert claim(services, 10) == []
    assert order == locked  # FIFO among the parked tasks


def test_lock_is_released_by_failure_and_by_lease_expiry(services: Services) -> None:
    c = services.tasks
    a = c.enqueue(
        "t",
        lock_key="L",
        backoff={"base_seconds": 3600, "factor": 1, "max_seconds": 3600, "jitter": False},
    )
    b = c.enqueue("t", lock_key="L", max_attempts=1)
    [la] = claim(services, 5)
    assert la.task_id == a["id"]
    services.queue.fail("default", la.task_id, la.lease_token, "x")
    [lb] = claim(services, 5, lease_ms=20)
    assert lb.task_id == b["id"]
    d = c.enqueue("t", lock_key="L")
    assert claim(services, 5) == []
    wait_until(lambda: services.queue.clock.now_ms() > lb.lease_expires_ms + 5)
    [ld] = wait_until(lambda: claim(services, 5))
    assert ld.task_id == d["id"]
    assert services.tasks.get(b["id"])["status"] == "dead"  # lease lost on its only attempt


def test_paused_queue_accepts_but_starts_nothing(services: Services) -> None:
    services.queue.configure("default", paused="1")
    task = services.tasks.enqueue("t")
    assert task["status"] == "queued"
    assert claim(services, 10) == []
    services.queue.configure("default", paused="0")
    assert [lease.task_id for lease in claim(services, 10)] == [task["id"]]


def test_concurrency_caps_running_tasks_across_workers(services: Services) -> None:
    services.queue.configure("default", concurrency="2")
    services.tasks.enqueue_many([{"name": "t"} for _ in range(5)])
    got = claim(services, 10, worker="a")
    assert len(got) == 2
    assert claim(services, 10, worker="b") == []
    services.queue.complete("default", got[0].task_id, got[0].lease_token, "null")
    assert len(claim(services, 10, worker="b")) == 1
    services.queue.configure("default", concurrency="")
    assert len(claim(services, 10, worker="b")) == 2


def test_rate_limit_holds_starts_within_ten_percent_over_five_seconds(services: Services) -> None:
    """A measurement over real time by nature: 20 starts/s for 5 s should give ~100."""
    services.queue.configure("default", rl_rate="20", rl_burst="1")
    services.tasks.enqueue_many([{"name": "t"} for _ in range(400)])
    started = 0
    end = time.monotonic() + 5.0
    hints = []
    while time.monotonic() < end:
        result = services.queue.claim(["default"], "w", 50, 30_000)
        started += len(result.leases)
        if not result.leases:
            hints.append(result.retry_after_ms)
            time.sleep(min(result.retry_after_ms, 50) / 1000)  # pacing, as a worker would
    assert 90 <= started <= 111, started
    assert hints and all(0 < h <= 50 for h in hints)


def test_redis_that_may_evict_is_refused(services: Services) -> None:
    r = services.redis
    old = r.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        r.config_set("maxmemory-policy", "allkeys-lru")
        with pytest.raises(ConfigError, match="noeviction"):
            services.queue.check_eviction_policy(allow_evicting=False)
        services.queue.check_eviction_policy(allow_evicting=True)
    finally:
        r.config_set("maxmemory-policy", old)
    services.queue.check_eviction_policy(allow_evicting=False)


def test_enqueue_is_idempotent_in_redis(services: Services) -> None:
    task = services.tasks.enqueue("t")
    row = services.store.get_task(task["id"])
    assert row is not None
    assert services.tasks.restore(row) is False  # already there: untouched
    assert services.redis.zcard(services.keys.queue("default").ready) == 1
    assert Code.EXISTS == 6


def test_no_task_enters_a_queue_missing_from_the_registry(services: Services) -> None:
    # Recorders and sweeps find queues only through the registry. A single create runs
    # one script call with no registry write, so the script itself must refuse a queue
    # that is not registered (a new one, or one whose registry Redis lost).
    r, qk = services.redis, services.keys.queue("fresh")
    first = services.tasks.enqueue("t", queue="fresh")
    assert b"fresh" in r.smembers(services.keys.queues)
    assert r.hget(qk.meta, "registered") == b"1"
    r.delete(services.keys.queues, qk.meta)  # Redis lost them (a restart, a failover)
    second = services.tasks.enqueue("t", queue="fresh")
    assert b"fresh" in r.smembers(services.keys.queues)
    assert r.zrange(qk.ready, 0, -1) == [first["id"].encode(), second["id"].encode()]
    many = services.tasks.enqueue_many(
        [{"name": "t", "queue": "other"}, {"name": "t", "queue": "fresh"}]
    )
    assert {b"fresh", b"other"} <= r.smembers(services.keys.queues)
    assert r.zcard(services.keys.queue("other").ready) == 1 and r.zcard(qk.ready) == 3
    assert all(t["status"] == "queued" for t in many)


def test_startup_check_refuses_evicting_redis_but_not_a_down_one(services: Services) -> None:
    from chalicelib.core.settings import Settings
    from chalicelib.service import deps

    r = services.redis
    old = r.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        r.config_set("maxmemory-policy", "volatile-lru")
        with pytest.raises(ConfigError):
            deps.check_redis(services)
    finally:
        r.config_set("maxmemory-policy", old)
    down = deps.build(
        Settings(
            **{
                **services.settings.__dict__,
                "redis_url": "redis://127.0.0.1:1/0",
                "io_timeout_seconds": 0.2,
            }
        )
    )
    try:
        deps.check_redis(down)  # starts anyway: 503 / offline until Redis returns
    finally:
        down.close()
