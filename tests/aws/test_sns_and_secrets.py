"""Dead tasks on SNS, and JWTs signed with a Secrets Manager secret (moto)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import boto3
import jwt

from chalicelib.api import web
from chalicelib.api.auth import Role
from chalicelib.core.clock import utcnow
from chalicelib.record.deliveries import Deliveries
from chalicelib.service.deps import Services
from chalicelib.service.notify import Notifier
from chalicelib.service.recorder import Recorder
from tests.helpers import wait_until


def _subscribed_queue(topic_arn: str) -> tuple[Any, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="dead-letters")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    boto3.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn["QueueArn"])
    return sqs, url


def test_a_dead_task_is_published_to_sns(aws: None, services: Services) -> None:
    topic_arn = boto3.client("sns").create_topic(Name="dtq-dead")["TopicArn"]
    sqs, queue_url = _subscribed_queue(topic_arn)
    task = services.tasks.enqueue("fragile", {"n": 7}, max_attempts=1)
    survivor = services.tasks.enqueue("fine")
    [lease] = services.queue.claim(["default"], "w1", 1, 30_000).leases
    assert (
        services.queue.fail("default", lease.task_id, lease.lease_token, "boom", -1, "w1") == "dead"
    )
    [lease] = services.queue.claim(["default"], "w1", 1, 30_000).leases
    services.queue.complete("default", lease.task_id, lease.lease_token, "null", "w1")
    Recorder(services.queue, services.store, "rec").drain()

    settings = replace(services.settings, notify_topic_arn=topic_arn)
    notifier = Notifier.from_settings(settings, services.store)
    assert notifier.deliver_due() == 1  # the dead task only: no webhooks were asked for
    notifier.close()

    [message] = wait_until(
        lambda: sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages"),
        5,
        "the SNS message",
    )
    envelope = json.loads(message["Body"])
    assert envelope["TopicArn"] == topic_arn and envelope["Subject"] == "DTQ task.dead: fragile"
    body = json.loads(envelope["Message"])
    assert body["event"] == "task.dead"
    assert body["task"]["id"] == task["id"] and body["task"]["error"] == "boom"
    assert body["task"]["status"] == "dead" and body["task"]["attempts"] == 1
    assert envelope["MessageAttributes"]["event"]["Value"] == "task.dead"
    history = [h["event"] for h in services.tasks.get(task["id"])["history"]]
    assert history[-2:] == ["dead", "sns_published"]
    assert Deliveries(services.store).of_task(survivor["id"]) == []


def test_jwts_are_signed_with_the_secrets_manager_secret(aws: None, services: Services) -> None:
    secret = "s" * 48
    boto3.client("secretsmanager").create_secret(Name="dtq/jwt", SecretString=secret)
    settings = replace(services.settings, jwt_secret=None, jwt_secret_id="dtq/jwt")
    services.settings = settings
    context = web.build(services)
    token, _ = context.issuer.issue("alice", Role.ADMIN, utcnow())
    assert context.issuer.verify(token).sub == "alice"
    claims = jwt.decode(token, secret, algorithms=["HS256"], audience=settings.jwt_audience)
    assert claims["sub"] == "alice"
