"""Large payloads and results go to S3 and come back whole (moto)."""

from __future__ import annotations

import json
from dataclasses import replace

import boto3
import pytest

from chalicelib.core.errors import ConfigError, PayloadTooLarge
from chalicelib.core.settings import Settings
from chalicelib.service import aws, deps, payloads
from chalicelib.service.deps import Services
from chalicelib.service.payloads import Payloads, is_ref
from chalicelib.service.recorder import Recorder
from tests.aws.conftest import BUCKET

MIB = 1024 * 1024


def _s3_object(key: str) -> bytes:
    return bytes(boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_a_1_mib_payload_and_a_large_result_round_trip_through_s3(offloading: Services) -> None:
    svc = offloading
    payload = {"blob": "x" * MIB, "n": 1}
    task = svc.tasks.enqueue("upload.process", payload)
    assert task["payload"] == payload  # the API answers with the full payload
    task_id = task["id"]

    # The record and Redis hold a small reference; S3 holds the payload.
    row = svc.store.get_task(task_id)
    assert row is not None and is_ref(row["payload"])
    assert row["payload"]["$dtq_offloaded"] == f"s3://{BUCKET}/payloads/{task_id}.json"
    live = svc.queue.task_hash("default", task_id)
    assert live is not None and len(live["payload"]) < 300
    assert json.loads(live["payload"]) == row["payload"]
    assert json.loads(_s3_object(f"payloads/{task_id}.json")) == payload

    # The worker's side: the lease carries the reference, resolve() gives it all.
    [lease] = svc.queue.claim(["default"], "w1", 1, 30_000).leases
    assert is_ref(lease.payload)
    assert payloads.resolve(lease.payload, svc.tasks.payloads) == payload

    # A result over the limit is offloaded the same way before it is reported.
    result = {"out": "y" * (svc.settings.max_payload_bytes + 1)}
    assert svc.tasks.payloads is not None
    reported = svc.tasks.payloads.offload_result(task_id, json.dumps(result))
    assert len(reported) < 300
    svc.queue.complete("default", task_id, lease.lease_token, reported, "w1")
    Recorder(svc.queue, svc.store, "rec").drain()
    row = svc.store.get_task(task_id)
    assert row is not None and row["status"] == "succeeded" and is_ref(row["result"])
    assert json.loads(_s3_object(f"results/{task_id}.json")) == result

    got = svc.tasks.get(task_id)
    assert got["payload"] == payload and got["result"] == result


def test_small_payloads_stay_inline_and_batches_offload_per_task(offloading: Services) -> None:
    svc = offloading
    small, big = {"a": 1}, {"blob": "é" * MIB}  # 2 bytes per character in UTF-8
    tasks = svc.tasks.enqueue_many([{"name": "s", "payload": small}, {"name": "b", "payload": big}])
    rows = {r["name"]: r for r in svc.store.get_tasks([t["id"] for t in tasks])}
    assert rows["s"]["payload"] == small and is_ref(rows["b"]["payload"])
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [f"payloads/{tasks[1]['id']}.json"]
    assert svc.tasks.get(tasks[1]["id"])["payload"] == big


def test_without_a_bucket_large_payloads_are_still_refused(services: Services) -> None:
    assert services.tasks.payloads is None
    with pytest.raises(PayloadTooLarge):
        services.tasks.enqueue("t", {"blob": "x" * MIB})


def test_a_reference_outside_the_bucket_is_refused(offloading: Services) -> None:
    store = offloading.tasks.payloads
    assert store is not None
    forged = {"$dtq_offloaded": "s3://someone-elses-bucket/secrets.json", "bytes": 1, "sha256": ""}
    with pytest.raises(ConfigError):
        store.resolve(forged)
    with pytest.raises(ConfigError):
        store.resolve({**forged, "$dtq_offloaded": f"s3://{BUCKET}/other/x.json"})
    with pytest.raises(ConfigError):  # a worker without the bucket setting
        payloads.resolve(forged, None)
    assert payloads.resolve({"plain": True}, None) == {"plain": True}


def test_aws_endpoint_url_is_honoured(moto_endpoint: str, settings: Settings) -> None:
    """Through a real endpoint, as with LocalStack or `dtq dev`'s moto server."""
    env = {"AWS_ENDPOINT_URL": moto_endpoint, "DTQ_PAYLOAD_BUCKET": BUCKET}
    configured = Settings.from_env(env)
    assert configured.aws_endpoint_url == moto_endpoint
    s3 = aws.s3(configured)
    assert s3.meta.endpoint_url == moto_endpoint
    assert aws.sns(configured).meta.endpoint_url == moto_endpoint
    s3.create_bucket(Bucket=BUCKET)
    svc = deps.build(
        replace(settings, payload_bucket=BUCKET, aws_endpoint_url=moto_endpoint), pool_size=2
    )
    try:
        payload = {"blob": "z" * (settings.max_payload_bytes + 1)}
        task = svc.tasks.enqueue("t", payload)
        assert s3.head_object(Bucket=BUCKET, Key=f"payloads/{task['id']}.json")
        assert svc.tasks.get(task["id"])["payload"] == payload
        assert isinstance(svc.tasks.payloads, Payloads)
    finally:
        for key in svc.redis.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
            svc.redis.delete(key)
        svc.close()
