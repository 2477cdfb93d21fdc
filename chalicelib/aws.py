"""boto3 clients for every AWS feature, pointed at ``AWS_ENDPOINT_URL`` (or LocalStack's
``LOCALSTACK_HOST``) when it is set.

One place builds them, so LocalStack, a moto server or real AWS is a matter of
configuration alone. Credentials and region come from boto3's usual chain (environment,
profile, the Lambda or ECS task role).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from chalicelib.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient

#: Fail fast like the Redis and Postgres clients do: a request answers 503, never hangs.
_RETRIES = {"max_attempts": 3, "mode": "standard"}


def _config(settings: Settings) -> Config:
    timeout = max(settings.io_timeout_seconds, 2.0)
    return Config(connect_timeout=timeout, read_timeout=timeout * 4, retries=_RETRIES)  # type: ignore[arg-type]


def s3(settings: Settings) -> S3Client:
    return boto3.client("s3", endpoint_url=settings.aws_endpoint("s3"), config=_config(settings))


def sns(settings: Settings) -> SNSClient:
    return boto3.client("sns", endpoint_url=settings.aws_endpoint("sns"), config=_config(settings))
