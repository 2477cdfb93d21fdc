"""The local AWS endpoint of ``dtq dev``: a moto server and the resources DTQ uses.

Children get ``AWS_ENDPOINT_URL`` and dummy credentials, so every boto3 client in DTQ
talks to it by configuration alone, as it would to LocalStack or to AWS.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from chalicelib.core.errors import DTQError

BUCKET = "dtq-dev-payloads"
TOPIC = "dtq-dead-letters"
#: The fake endpoint accepts any credentials; these keep a developer's real ones away
#: from it.
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
}


def available() -> bool:
    return importlib.util.find_spec("moto") is not None


def server_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def ready_path() -> str:
    """A path the server answers 200 on once it serves."""
    return "/moto-api/data.json"


def create_resources(url: str) -> str:
    """Create the payload bucket and the dead-letter topic; returns the topic's ARN.

    The bucket is not handed to DTQ (``DTQ_PAYLOAD_BUCKET``): moto keeps objects in
    memory, so the offloaded payloads of queued tasks would not survive a restart.
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    kwargs: dict[str, Any] = {
        "endpoint_url": url,
        "region_name": ENV["AWS_DEFAULT_REGION"],
        "aws_access_key_id": ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": ENV["AWS_SECRET_ACCESS_KEY"],
    }
    try:
        boto3.client("s3", **kwargs).create_bucket(Bucket=BUCKET)
        return str(boto3.client("sns", **kwargs).create_topic(Name=TOPIC)["TopicArn"])
    except (BotoCoreError, ClientError) as exc:
        raise DTQError(f"the local AWS endpoint refused the setup: {exc}") from exc
