"""Webhooks end to end: real Redis, real Postgres, a real HTTP receiver on 127.0.0.1.

Transitions reach the outbox through the recorder; the notifier signs, posts, retries
with backoff, and every attempt shows in the task's history.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from typing import Any

from chalicelib.record.deliveries import Attempt, Deliveries
from chalicelib.service.deps import Services
from chalicelib.service.notify import Notifier, RetryPolicy, body_of, retry_delay_s, sign, verify
from chalicelib.service.recorder import Recorder, join_entries
from tests.helpers import wait_until
from tests.notify.conftest import Receiver

SECRET = b"webhook-secret-for-tests"
#: Fast enough for a test, slow enough that the backoff is measurable.
FAST = RetryPolicy(base_seconds=0.2, factor=2.0, max_seconds=1.0, max_attempts=3)


def _notifier(services: Services, **kwargs: Any) -> Notifier:
    return Notifier(Deliveries(services.store), **{"secret": SECRET, "policy": FAST, **kwargs})


def _run_one(services: Services, queue: str = "default", result: str = '{"ok":true}') -> None:
    [lease] = services.queue.claim([queue], "w1", 1, 30_000).leases
    services.queue.complete(queue, lease.task_id, lease.lease_token, result, "w1")


def _fail(services: Services, queue: str, error: str) -> str:
    [lease] = wait_until(lambda: services.queue.claim([queue], "w1", 1, 30_000).leases)
    return services.queue.fail(queue, lease.task_id, lease.lease_token, error, 0, "w1").value


def _delivery_events(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [h for h in task["history"] if h["event"].startswith(("webhook_", "sns_"))]


def test_webhook_is_signed_retried_with_backoff_and_in_the_history(
    services: Services, receiver: Receiver
) -> None:
    receiver.respond(500)  # the first attempt fails, the second succeeds
    task = services.tasks.enqueue("report", {"n": 1}, webhook_url=receiver.url + "/hook")
    _run_one(services)
    # As in `dtq api` / `dtq worker`: a recorder and a notifier thread, nothing driven.
    stop = threading.Event()
    recorder = Recorder(services.queue, services.store, "rec")
    threads = [
        threading.Thread(target=recorder.run, args=(stop,)),
        threading.Thread(target=_notifier(services).run, args=(stop, 0.01)),
    ]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(receiver.requests) >= 2, 15, "two webhook attempts")
        got = wait_until(
            lambda: (t := services.tasks.get(task["id"])) and len(_delivery_events(t)) == 2 and t,
            10,
            "both attempts in the history",
        )
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    first, second = receiver.requests
    for req in (first, second):
        assert req.path == "/hook"
        assert req.headers["Content-Type"] == "application/json"
        assert verify(SECRET, req.body, req.headers["X-DTQ-Signature"])
        assert not verify(b"another-secret-entirely", req.body, req.headers["X-DTQ-Signature"])
    assert first.body == second.body  # the same message, so the same signature
    assert first.headers["X-DTQ-Delivery"] == second.headers["X-DTQ-Delivery"]
    assert second.at - first.at >= FAST.base_seconds / 2  # backoff, not a hot loop
    message = json.loads(second.body)
    assert message["event"] == "task.succeeded" and message["at"]
    assert {k: message["task"][k] for k in ("id", "name", "queue", "status", "attempts")} == {
        "id": task["id"],
        "name": "report",
        "queue": "default",
        "status": "succeeded",
        "attempts": 1,
    }
    assert message["task"]["result"] == {"ok": True} and message["task"]["error"] is None

    events = [h["event"] for h in got["history"]]
    assert events[-3:] == ["succeeded", "webhook_failed", "webhook_delivered"]
    failed, delivered = _delivery_events(got)
    assert failed["error"] == "HTTP 500" and failed["delivery"] == {
        "event": "task.succeeded",
        "attempt": 1,
        "status_code": 500,
    }
    assert delivered["error"] is None and delivered["delivery"]["attempt"] == 2
    assert failed["at"] <= delivered["at"]
    # No more attempts once delivered, and nothing for SNS (the task did not die).
    [row] = Deliveries(services.store).of_task(task["id"])
    assert row["state"] == "delivered" and row["attempts"] == 2


def test_retrying_and_dead_use_the_queue_default_and_the_task_url_wins(
    services: Services, receiver: Receiver
) -> None:
    queue = f"q{uuid.uuid4().hex[:8]}"
    deliveries = Deliveries(services.store)
    deliveries.set_queue_webhook(queue, receiver.url + "/queue-default")
    assert deliveries.queue_webhooks([queue]) == {queue: receiver.url + "/queue-default"}
    fragile = services.tasks.enqueue(
        "fragile", queue=queue, max_attempts=2, backoff={"base_seconds": 0.0}
    )
    own = services.tasks.enqueue("own", queue=queue, webhook_url=receiver.url + "/own")
    # Claim order is FIFO: fail `fragile` twice (retrying, then dead), then finish `own`.
    assert _fail(services, queue, "boom 1") == "retrying"
    assert _fail(services, queue, "boom 2") == "retrying"  # `own`: its first attempt
    assert _fail(services, queue, "boom 3") == "dead"  # `fragile`, attempts spent
    _run_one(services, queue)
    Recorder(services.queue, services.store, "rec").drain()
    notifier = _notifier(services)
    wait_until(lambda: notifier.deliver_due() == 0 and len(receiver.requests) == 4, 10)
    notifier.close()
    seen = sorted(
        (r.path, json.loads(r.body)["task"]["name"], json.loads(r.body)["event"])
        for r in receiver.requests
    )
    assert seen == [
        ("/own", "own", "task.retrying"),
        ("/own", "own", "task.succeeded"),
        ("/queue-default", "fragile", "task.dead"),
        ("/queue-default", "fragile", "task.retrying"),
    ]
    by_event = {json.loads(r.body)["event"]: json.loads(r.body) for r in receiver.requests}
    assert by_event["task.dead"]["task"]["error"] == "boom 3"
    assert by_event["task.dead"]["task"]["attempts"] == 2
    assert by_event["task.retrying"]["task"]["run_at"]  # when it will run again
    # The dead task also has an SNS delivery; with no topic configured it is skipped.
    states = {(r["channel"], r["event"]): r["state"] for r in deliveries.of_task(fragile["id"])}
    assert states == {
        ("webhook", "task.retrying"): "delivered",
        ("webhook", "task.dead"): "delivered",
        ("sns", "task.dead"): "skipped",
    }
    assert own["id"] != fragile["id"]
    deliveries.set_queue_webhook(queue, None)
    assert deliveries.queue_webhooks([queue]) == {}


def test_a_replayed_recorder_batch_schedules_each_delivery_once(
    services: Services, receiver: Receiver
) -> None:
    task = services.tasks.enqueue("t", webhook_url=receiver.url)
    _run_one(services)
    stream = services.keys.queue("default").events
    batch = join_entries([f[b"d"] for _, f in services.redis.xrange(stream)])
    deliveries = Deliveries(services.store)
    services.store.record(batch)
    services.store.record(batch)  # as after a crash between the commit and the XACK
    assert [r["event"] for r in deliveries.of_task(task["id"])] == ["task.succeeded"]


def test_a_notifier_that_dies_mid_delivery_is_replaced_after_its_lease(
    services: Services, receiver: Receiver
) -> None:
    task = services.tasks.enqueue("t", webhook_url=receiver.url)
    _run_one(services)
    Recorder(services.queue, services.store, "rec").drain()
    deliveries = Deliveries(services.store)
    [lost] = deliveries.claim(10, lease_s=0.2)  # claimed, then its notifier "dies"
    assert deliveries.claim(10, lease_s=0.2) == []  # hidden while the lease lasts
    [again] = wait_until(lambda: deliveries.claim(10, lease_s=30), 5, "the lease to end")
    assert again.id == lost.id and again.attempt == 2
    # The late notifier's outcome no longer moves the row; the current holder's does.
    deliveries.finish(lost, Attempt(ok=True, status_code=200), "delivered", 0)
    assert deliveries.of_task(task["id"])[0]["state"] == "pending"
    deliveries.finish(again, Attempt(ok=True, status_code=200), "delivered", 0)
    assert deliveries.of_task(task["id"])[0]["state"] == "delivered"


def test_redirects_are_not_followed_and_410_stops_retries(
    services: Services, receiver: Receiver
) -> None:
    receiver.respond(302, 410)
    task = services.tasks.enqueue("t", webhook_url=receiver.url + "/hook")
    _run_one(services)
    Recorder(services.queue, services.store, "rec").drain()
    notifier = _notifier(services, policy=replace(FAST, base_seconds=0.05))
    deliveries = Deliveries(services.store)
    wait_until(
        lambda: (
            notifier.deliver_due() >= 0 and deliveries.of_task(task["id"])[0]["state"] == "failed"
        ),
        10,
    )
    notifier.close()
    assert [r.path for r in receiver.requests] == ["/hook", "/hook"]  # never /elsewhere
    codes = [h["delivery"]["status_code"] for h in _delivery_events(services.tasks.get(task["id"]))]
    assert codes == [302, 410]


def test_without_a_secret_nothing_is_sent_and_the_history_says_why(
    services: Services, receiver: Receiver
) -> None:
    task = services.tasks.enqueue("t", webhook_url=receiver.url)
    _run_one(services)
    Recorder(services.queue, services.store, "rec").drain()
    notifier = Notifier.from_settings(services.settings, services.store)  # no secret set
    assert notifier.deliver_due() == 1
    notifier.close()
    [attempt] = _delivery_events(services.tasks.get(task["id"]))
    assert attempt["event"] == "webhook_failed"
    assert attempt["error"] == "DTQ_WEBHOOK_SECRET is not set"
    assert receiver.requests == []


def test_an_unreachable_receiver_is_a_failed_attempt(services: Services) -> None:
    task = services.tasks.enqueue("t", webhook_url="http://127.0.0.1:1/nobody")
    _run_one(services)
    Recorder(services.queue, services.store, "rec").drain()
    secret = "s" * 16
    notifier = Notifier.from_settings(
        replace(services.settings, webhook_secret=secret), services.store
    )
    assert notifier.secret == secret.encode()
    assert notifier.deliver_due() == 1
    notifier.close()
    [attempt] = _delivery_events(services.tasks.get(task["id"]))
    assert attempt["event"] == "webhook_failed" and "refused" in attempt["error"].lower()


def test_retry_delay_grows_is_capped_and_keeps_half_fixed() -> None:
    policy = RetryPolicy(base_seconds=2, factor=2, max_seconds=60, max_attempts=15)
    assert retry_delay_s(policy, 1, 0.0) == 1.0 and retry_delay_s(policy, 1, 1.0) == 2.0
    assert retry_delay_s(policy, 3, 0.5) == 6.0
    assert retry_delay_s(policy, 30, 0.0) == 30.0 and retry_delay_s(policy, 30, 1.0) == 60.0
    default = RetryPolicy()
    total = sum(retry_delay_s(default, n, 0.5) for n in range(1, default.max_attempts))
    assert 2 * 3600 < total < 6 * 3600  # "about four hours" of retries


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    import hashlib
    import hmac

    body = b'{"event":"task.dead"}'
    assert sign(SECRET, body) == "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert verify(SECRET, body, sign(SECRET, body))
    assert not verify(SECRET, body + b" ", sign(SECRET, body))
    assert not verify(SECRET, body, None)
    assert body_of.__doc__  # the body builder documents its determinism


def test_the_scheduled_function_delivers_what_is_due(
    services: Services, settings: Any, receiver: Receiver
) -> None:
    """In AWS no long-running process delivers: the `deliver_notifications` rule does."""
    from chalice.test import Client

    import app as app_module
    from chalicelib.api import web

    task = services.tasks.enqueue("report", {}, webhook_url=receiver.url + "/scheduled")
    _run_one(services)
    Recorder(services.queue, services.store, "rec").drain()
    hooked = replace(services, settings=replace(services.settings, webhook_secret=SECRET.decode()))
    web.use(hooked)
    try:
        with Client(app_module.app) as client:
            event = client.events.generate_cw_event(
                source="aws.events",
                detail_type="Scheduled Event",
                detail={},
                resources=["arn:aws:events:us-east-1:123456789012:rule/deliver"],
            )
            reply = client.lambda_.invoke("deliver_notifications", event).payload
    finally:
        web.use(None)
    assert reply == {"delivered": 1}
    [req] = receiver.requests
    assert req.path == "/scheduled" and verify(SECRET, req.body, req.headers["X-DTQ-Signature"])
    assert json.loads(req.body)["task"]["id"] == task["id"]
