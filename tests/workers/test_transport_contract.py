"""One contract for every worker transport (huey's StorageTests idea): the Redis
transport always; the HTTP transport once ``workers/cli/serve.py`` (``dtq api``) exists."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import threading
from collections.abc import Iterator

import pytest

from chalicelib.core import passwords
from chalicelib.core.models import Outcome
from chalicelib.core.settings import Settings
from chalicelib.service.deps import Services
from chalicelib.service.fleet import Fleet
from tests.helpers import free_port, port_answers, wait_until
from tests.workers.procs import DTQ, worker_env
from workers.transport import RedisTransport, Transport

TRANSPORTS = ["redis"] + (["http"] if importlib.util.find_spec("workers.cli.serve") else [])


def _http_transport(services: Services, settings: Settings) -> Iterator[Transport]:
    from workers.http_transport import HttpTransport

    assert settings.worker_password is not None
    services.store.upsert_user(
        settings.worker_username, passwords.hash_password(settings.worker_password), "worker"
    )
    port = free_port()
    env = worker_env(settings)
    env.update(
        {
            "DTQ_JWT_SECRET": settings.jwt_secret or "",
            "DTQ_WORKER_PASSWORD": settings.worker_password,
        }
    )
    api = subprocess.Popen([DTQ, "api", "--port", str(port)], env=env)
    try:
        wait_until(lambda: port_answers(port), timeout_s=60, what="dtq api")
        transport = HttpTransport(
            f"http://127.0.0.1:{port}", settings.worker_username, settings.worker_password
        )
        yield transport
        transport.close()
    finally:
        api.terminate()
        api.wait(10)


@pytest.fixture(params=TRANSPORTS)
def transport(
    request: pytest.FixtureRequest, services: Services, settings: Settings
) -> Iterator[Transport]:
    if request.param == "redis":
        yield RedisTransport(services.queue, Fleet(services.queue, services.store), services.tasks)
    else:
        yield from _http_transport(services, settings)


def test_claim_on_an_empty_queue_returns_nothing(transport: Transport) -> None:
    assert transport.claim("w1", ["default"], 5, 30_000)[0] == []


def test_claim_highest_priority_first_with_lease_fields(
    transport: Transport, services: Services
) -> None:
    low = services.tasks.enqueue("t", {"a": 1}, priority=1)
    high = services.tasks.enqueue("t", {"b": 2}, priority=8)
    leases, _ = transport.claim("w1", ["default"], 5, 30_000)
    assert [lease.task_id for lease in leases] == [high["id"], low["id"]]
    first = leases[0]
    assert (first.payload, first.attempt, first.fence, first.name) == ({"b": 2}, 1, 1, "t")
    assert first.lease_token and first.lease_expires_ms > services.queue.clock.now_ms()


def test_extend_keeps_the_lease_and_reports_lost_and_canceled(
    transport: Transport, services: Services
) -> None:
    a = services.tasks.enqueue("t")
    b = services.tasks.enqueue("t")
    la, lb = transport.claim("w1", ["default"], 2, 5_000)[0]
    services.tasks.cancel(b["id"])
    bogus = la._replace(lease_token="not-mine")
    ok, canceled, lost = transport.extend([(la, 60_000), (lb, 60_000), (bogus, 60_000)])
    assert ok.task_id == a["id"] and ok.lost is None and not ok.canceled
    assert ok.expires_ms > la.lease_expires_ms
    assert canceled.canceled
    assert lost.lost is not None


def test_sync_accepts_once_and_a_resend_changes_nothing(
    transport: Transport, services: Services
) -> None:
    task = services.tasks.enqueue("t")
    [lease] = transport.claim("w1", ["default"], 1, 30_000)[0]
    report = Outcome(
        lease.queue, lease.task_id, lease.lease_token, True, '{"n": 1}', started_ms=1, finished_ms=2
    )
    first = transport.sync("w1", [report], [])
    assert first.accepted == [task["id"]] and first.rejected == []
    again = transport.sync("w1", [report], [])
    # One set of rules (chalicelib/service/outcomes.py): a re-send changes nothing; over
    # HTTP it is also recognised and accepted again, uncounted as a duplicate.
    if transport.mode == "http":
        assert again.accepted == [task["id"]] and again.rejected == []
        stats = services.redis.hgetall(services.keys.queue("default").stats)
        assert int(stats.get(b"duplicates", 0)) == 0
    else:
        assert again.accepted == [] and again.rejected == [(task["id"], "already_finished")]
    live = services.queue.task_hash("default", task["id"]) or {}
    assert (live["st"], json.loads(live["res"]), live["att"]) == ("succeeded", {"n": 1}, "1")
    other = report._replace(result_json='{"n": 2}')  # another outcome of that lease: refused
    assert transport.sync("w1", [other], []).rejected == [(task["id"], "already_finished")]


def test_a_failed_outcome_follows_the_retry_policy(
    transport: Transport, services: Services
) -> None:
    task = services.tasks.enqueue("t", max_attempts=2)
    [lease] = transport.claim("w1", ["default"], 1, 30_000)[0]
    bad = Outcome(lease.queue, lease.task_id, lease.lease_token, False, error="boom")
    assert transport.sync("w1", [bad], []).accepted == [task["id"]]
    assert (services.queue.task_hash("default", task["id"]) or {})["st"] == "retrying"


def test_created_tasks_are_pushed_once_by_idempotency_key(
    transport: Transport, services: Services
) -> None:
    body = {"name": "child", "payload": {"x": 1}, "idempotency_key": "parent:1"}
    assert transport.sync("w1", [], [body]).created == ["parent:1"]
    assert transport.sync("w1", [], [body]).created == ["parent:1"]
    tasks, _ = services.tasks.list(name="child")
    assert len(tasks) == 1 and tasks[0]["idempotency_key"] == "parent:1"


def test_release_gives_the_task_back_without_counting_the_attempt(
    transport: Transport, services: Services
) -> None:
    task = services.tasks.enqueue("t")
    [lease] = transport.claim("w1", ["default"], 1, 30_000)[0]
    transport.release([lease])
    live = services.queue.task_hash("default", task["id"]) or {}
    assert (live["st"], live["att"]) == ("queued", "0")


def test_registration_shows_the_worker_in_the_fleet(
    transport: Transport, services: Services
) -> None:
    interval = transport.register("w-contract", ["default", "b"], "host1", 4, first=True)
    assert interval > 0
    [info] = [
        w
        for w in Fleet(services.queue, services.store).describe()
        if w["worker_id"] == "w-contract"
    ]
    assert (info["alive"], info["queues"], info["mode"]) == (True, ["default", "b"], transport.mode)


def test_wait_for_work_blocks_until_an_enqueue_signals(
    transport: Transport, services: Services
) -> None:
    services.tasks.enqueue("t")  # the queue exists
    transport.claim("w1", ["default"], 1, 30_000)  # and has nothing ready
    signal = services.keys.queue("default").signal
    services.redis.delete(signal)  # no stale wake-up
    enqueued: list[str] = []
    timer = threading.Timer(0.3, lambda: enqueued.append(services.tasks.enqueue("t")["id"]))
    timer.start()
    transport.wait_for_work(["default"], 5.0)
    timer.join()
    # The wait consumed the enqueue's one wake-up signal: it was still waiting when the
    # enqueue came (returning early or by timeout would have left the signal there).
    assert enqueued and services.redis.llen(signal) == 0


def test_progress_is_kept_for_the_holder_and_refused_to_others(
    transport: Transport, services: Services
) -> None:
    task = services.tasks.enqueue("t")
    [lease] = transport.claim("w1", ["default"], 1, 30_000)[0]
    assert transport.progress(lease, 0.3, "a third") is None
    assert transport.progress(lease, 0.4, "") is None  # held back from the history, kept
    assert transport.progress(lease._replace(lease_token="not-mine"), 0.9, "") == "lease_lost"
    progress = services.tasks.get(task["id"])["progress"]
    assert (progress["fraction"], progress["message"]) == (0.4, "")
    gone = lease._replace(task_id="0193a000-0000-7000-8000-00000000abcd")
    assert transport.progress(gone, 0.5, "") == "not_found"
