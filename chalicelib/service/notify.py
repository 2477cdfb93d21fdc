"""Delivers notifications: signed webhooks and SNS messages for dead tasks.

The outbox (``chalicelib.record.deliveries``) is filled by the recorder; a :class:`Notifier`
claims what is due, sends it and logs the attempt. It runs beside the recorder (a thread
of ``dtq api`` / ``dtq worker``, or a scheduled function), never inside a worker's
handling of a task, so a slow or dead receiver can never hold up a task.

Webhook contract (docs/api.md "Notifications"): ``POST`` of a JSON body
``{"event", "delivery_id", "task": {...}, "at"}``, with
``X-DTQ-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed with
``DTQ_WEBHOOK_SECRET``; any 2xx is success, anything else is retried with exponential
backoff (410 Gone stops at once). Delivery is at least once: receivers dedupe on
``X-DTQ-Delivery``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.clock import iso
from chalicelib.core.errors import Unavailable
from chalicelib.core.settings import Settings
from chalicelib.record.deliveries import SNS, WEBHOOK, Attempt, Deliveries, Delivery
from chalicelib.record.store import Store
from chalicelib.service import aws

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

log = logging.getLogger("dtq.notify")

SIGNATURE_HEADER = "X-DTQ-Signature"
#: Deliveries one notifier claims per round.
BATCH = 50
#: How long a claimed delivery stays hidden from other notifiers (longer than a round:
#: BATCH / PARALLEL requests of at most TIMEOUT_S each).
LEASE_S = 120.0
#: Seconds one webhook request may take.
TIMEOUT_S = 10.0
#: Webhook requests in flight per notifier.
PARALLEL = 8

#: (url, body, headers, timeout_s) → HTTP status; raises OSError when nothing answered.
Poster = Callable[[str, bytes, dict[str, str], float], int]


@dataclass(frozen=True)
class RetryPolicy:
    """Delay before attempt n+1 is ``base * factor**(n-1)`` capped at ``max``, half of it
    random; after ``max_attempts`` the delivery fails for good. Defaults: 15 attempts
    over about four hours."""

    base_seconds: float = 2.0
    factor: float = 2.0
    max_seconds: float = 3600.0
    max_attempts: int = 15


def retry_delay_s(policy: RetryPolicy, attempt: int, rand: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (from 1). "Equal jitter": half
    fixed so a receiver that is down is not hammered, half random so that a burst of
    deliveries does not retry in lockstep."""
    d = min(policy.max_seconds, policy.base_seconds * policy.factor ** (attempt - 1))
    return d / 2 + d / 2 * rand


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-DTQ-Signature`` value of a body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str | None) -> bool:
    """For receivers: whether ``signature`` (the header's value) signs ``body``."""
    return signature is not None and hmac.compare_digest(sign(secret, body), signature)


def body_of(d: Delivery) -> bytes:
    """The message of a delivery; identical on every attempt (sorted keys)."""
    doc = {"event": d.event, "delivery_id": str(d.id), "task": d.task, "at": iso(d.at)}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would turn the POST into a GET, or send the signed body somewhere the
    # task's owner never named: a 3xx is a failed attempt instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def http_post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


class Notifier:
    def __init__(
        self,
        deliveries: Deliveries,
        *,
        secret: bytes | None,
        topic_arn: str | None = None,
        sns: SNSClient | None = None,
        policy: RetryPolicy = RetryPolicy(),
        post: Poster = http_post,
        timeout_s: float = TIMEOUT_S,
        parallel: int = PARALLEL,
    ) -> None:
        self.deliveries = deliveries
        self.secret = secret
        self.topic_arn = topic_arn
        self.sns = sns
        self.policy = policy
        self.post = post
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="dtq-notify")

    @classmethod
    def from_settings(cls, settings: Settings, store: Store) -> Notifier:
        """A notifier as configured by ``DTQ_WEBHOOK_SECRET`` and ``DTQ_NOTIFY_TOPIC_ARN``."""
        if settings.webhook_secret is None:
            log.warning("DTQ_WEBHOOK_SECRET is not set: webhook deliveries will fail")
        topic = settings.notify_topic_arn
        return cls(
            Deliveries(store),
            secret=None if settings.webhook_secret is None else settings.webhook_secret.encode(),
            topic_arn=topic,
            sns=aws.sns(settings) if topic else None,
        )

    def deliver_due(self, limit: int = BATCH) -> int:
        """One round: claim due deliveries and make one attempt at each. Returns how many."""
        due = self.deliveries.claim(limit, LEASE_S)
        if due:
            list(self._pool.map(self._deliver, due))
        return len(due)

    def _deliver(self, d: Delivery) -> None:
        try:
            if d.channel == SNS and not self.topic_arn:
                self.deliveries.finish(d, None, "skipped", 0)
                return
            attempt = self._webhook(d) if d.channel == WEBHOOK else self._publish(d)
            self.deliveries.finish(d, attempt, *self._next(d, attempt))
        except Exception:
            # The row stays claimed until its lease ends, then it is retried.
            log.exception("delivery %s of task %s could not be completed", d.id, d.task_id)

    def _next(self, d: Delivery, attempt: Attempt) -> tuple[str, float]:
        if attempt.ok:
            return "delivered", 0.0
        if attempt.status_code == 410 or d.attempt >= self.policy.max_attempts:
            return "failed", 0.0
        return "pending", retry_delay_s(self.policy, d.attempt, random.random())

    def _webhook(self, d: Delivery) -> Attempt:
        if self.secret is None:
            return Attempt(ok=False, error="DTQ_WEBHOOK_SECRET is not set")
        assert d.target is not None
        body = body_of(d)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "dtq-webhooks/1",
            "X-DTQ-Event": d.event,
            "X-DTQ-Delivery": str(d.id),
            SIGNATURE_HEADER: sign(self.secret, body),
        }
        try:
            status = self.post(d.target, body, headers, self.timeout_s)
        except (OSError, ValueError) as exc:  # refused, timed out, DNS, bad URL
            return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
        return Attempt(ok=200 <= status < 300, status_code=status)

    def _publish(self, d: Delivery) -> Attempt:
        assert self.sns is not None and self.topic_arn is not None
        task = d.task
        try:
            self.sns.publish(
                TopicArn=self.topic_arn,
                Message=body_of(d).decode(),
                Subject=f"DTQ {d.event}: {task.get('name', '')}"[:100],
                MessageAttributes={
                    "event": {"DataType": "String", "StringValue": d.event},
                    "queue": {"DataType": "String", "StringValue": str(task.get("queue"))},
                },
            )
        except (BotoCoreError, ClientError) as exc:
            return Attempt(ok=False, error=f"SNS: {exc}"[:500])
        return Attempt(ok=True)

    def run(self, stop: threading.Event, idle_wait_s: float = 0.25) -> None:
        """Deliver until ``stop`` is set; back off while Postgres is down."""
        backoff = idle_wait_s
        try:
            while not stop.is_set():
                try:
                    n = self.deliver_due()
                    backoff = idle_wait_s
                except Unavailable as exc:
                    log.warning("notifier waiting: %s", exc)
                    n = 0
                    backoff = min(backoff * 2, 5.0)
                if n == 0:
                    stop.wait(backoff)
        finally:
            self.close()

    def drain(self, budget_s: float, clock: Callable[[], float] = time.monotonic) -> int:
        """Deliver rounds until nothing is due or ``budget_s`` is spent: the body of a
        scheduled function (leave the Lambda timeout room for one more round)."""
        deadline = clock() + budget_s
        total = 0
        while clock() < deadline and (n := self.deliver_due()):
            total += n
        return total

    def close(self) -> None:
        self._pool.shutdown(wait=True)
