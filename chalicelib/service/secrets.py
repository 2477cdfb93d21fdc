"""Where the JWT signing secret comes from: the setting itself, or Secrets Manager.

Nothing here logs or formats the secret; error messages name the variable only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.errors import ConfigError
from chalicelib.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

#: RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32

ClientFactory = Callable[[str | None], "SecretsManagerClient"]


def default_client(endpoint_url: str | None) -> SecretsManagerClient:
    import boto3  # only when a secret is configured (see chalicelib/service/aws.py)

    return boto3.client("secretsmanager", endpoint_url=endpoint_url)


def load_jwt_secret(settings: Settings, client_factory: ClientFactory = default_client) -> bytes:
    """The signing secret: ``DTQ_JWT_SECRET`` as given, else the ``DTQ_JWT_SECRET_ID`` secret."""
    if settings.jwt_secret is not None:
        # Used as given rather than derived, so every service holding the same value
        # signs and verifies with the same key.
        return _checked(settings.jwt_secret.encode(), "DTQ_JWT_SECRET")
    if settings.jwt_secret_id is not None:
        text = _fetch(
            settings.jwt_secret_id, client_factory(settings.aws_endpoint("secretsmanager"))
        )
        return _checked(_unwrap(text).encode(), "DTQ_JWT_SECRET_ID")
    raise ConfigError(
        "DTQ_JWT_SECRET: set it, or DTQ_JWT_SECRET_ID to read it from Secrets Manager"
    )


def _fetch(secret_id: str, client: SecretsManagerClient) -> str:
    try:
        response = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "unknown")
        raise ConfigError(f"DTQ_JWT_SECRET_ID: cannot read {secret_id!r} ({code})") from exc
    except BotoCoreError as exc:
        raise ConfigError(f"DTQ_JWT_SECRET_ID: cannot read {secret_id!r} ({exc})") from exc
    text = response.get("SecretString")
    if text is None:
        raise ConfigError(f"DTQ_JWT_SECRET_ID: {secret_id!r} has no SecretString")
    return text


def _unwrap(text: str) -> str:
    # The console's key/value editor stores JSON, so accept {"secret": "..."} as well as
    # the raw value. Only a JSON *object* counts: a raw secret may happen to parse as a
    # JSON number or string.
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if not isinstance(value, dict):
        return text
    secret = value.get("secret")
    if not isinstance(secret, str):
        raise ConfigError('DTQ_JWT_SECRET_ID: a JSON secret must be {"secret": "<value>"}')
    return secret


def _checked(secret: bytes, var: str) -> bytes:
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{var}: the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret
