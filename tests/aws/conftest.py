"""AWS against moto: in-process (``mock_aws``) or as a real endpoint (a moto server on
127.0.0.1, reached through ``AWS_ENDPOINT_URL`` as LocalStack would be)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from chalicelib.core.settings import Settings
from chalicelib.service import deps
from chalicelib.service.deps import Services
from tests.helpers import free_port

BUCKET = "dtq-payloads-test"


def isolate_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real AWS account, profile or endpoint of the developer's shell may leak in."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SNS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    isolate_aws(monkeypatch)
    with mock_aws():
        yield


@pytest.fixture
def offloading(aws: None, settings: Settings) -> Iterator[Services]:
    """Services with DTQ_PAYLOAD_BUCKET set (and its bucket created)."""
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    svc = deps.build(replace(settings, payload_bucket=BUCKET), pool_size=4)
    yield svc
    for key in svc.redis.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        svc.redis.delete(key)
    svc.close()


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server on a free local port: an AWS endpoint over real HTTP."""
    isolate_aws(monkeypatch)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
