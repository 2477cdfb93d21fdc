"""boto3 clients for every AWS feature, pointed at ``AWS_ENDPOINT_URL`` (or LocalStack's
``LOCALSTACK_HOST``) when it is set.

One place builds them, so LocalStack, a moto server or real AWS is a matter of
configuration alone. Credentials and region come from boto3's usual chain (environment,
profile, the Lambda or ECS task role).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.core.settings import Settings

if TYPE_CHECKING:
    from botocore.config import Config
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient

#: Fail fast like the Redis and Postgres clients do: a request answers 503, never hangs.
_RETRIES = {"max_attempts": 3, "mode": "standard"}


# boto3 is imported where a client is built: importing it costs ≈ 0.2 s of CPU, which
# every worker, its recorder child and the API paid at start-up even with no AWS feature
# configured (a recorder child starting beside a busy worker took that from its drain).


def _config(settings: Settings) -> Config:
    from botocore.config import Config

    timeout = max(settings.io_timeout_seconds, 2.0)
    return Config(connect_timeout=timeout, read_timeout=timeout * 4, retries=_RETRIES)  # type: ignore[arg-type]


def s3(settings: Settings) -> S3Client:
    import boto3

    return boto3.client("s3", endpoint_url=settings.aws_endpoint("s3"), config=_config(settings))


def sns(settings: Settings) -> SNSClient:
    import boto3

    return boto3.client("sns", endpoint_url=settings.aws_endpoint("sns"), config=_config(settings))
