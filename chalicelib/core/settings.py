"""One settings object, built once from the environment.

``Settings.from_env`` is the only DTQ code that reads ``DTQ_*`` variables. It validates
every value and raises :class:`ConfigError` naming the variable, so a bad setting is a
one-line message at startup rather than a failure deep in a request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar
from urllib.parse import urlsplit

from chalicelib.core.errors import ConfigError

T = TypeVar("T")

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
#: Settings read from variables that other tools define too.
_FOREIGN_VARS = {"aws_endpoint_url": "AWS_ENDPOINT_URL", "localstack_host": "LOCALSTACK_HOST"}


@dataclass(frozen=True, kw_only=True)
class Settings:
    #: Redis holding the queue.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Connect with a Redis Cluster client (every per-queue key is hash-tagged by queue).
    redis_cluster: bool = False
    #: PostgreSQL holding the durable record (created if missing by ``dtq migrate``).
    database_url: str = "postgresql://postgres@127.0.0.1:5432/dtq"
    #: Prefix of every Redis key, so several deployments can share one Redis.
    key_prefix: str = "dtq"
    #: HS256 signing secret for JWTs (at least 32 bytes), or ...
    jwt_secret: str | None = field(default=None, repr=False)
    #: ... the Secrets Manager secret id that holds it.
    jwt_secret_id: str | None = None
    jwt_ttl_seconds: int = 3600
    jwt_algorithm: str = "HS256"
    jwt_issuer: str = "dtq"
    jwt_audience: str = "dtq-api"
    admin_username: str = "admin"
    admin_password: str | None = field(default=None, repr=False)
    worker_username: str = "worker"
    worker_password: str | None = field(default=None, repr=False)
    #: Larger task payloads are refused (413), or offloaded to S3 when a bucket is set.
    max_payload_bytes: int = 262_144
    #: Largest HTTP body accepted before parsing (a batch of 1000 tasks fits).
    max_body_bytes: int = 16 * 1024 * 1024
    payload_bucket: str | None = None
    notify_topic_arn: str | None = None
    #: HMAC-SHA256 key of webhook signatures (at least 16 bytes). Deliberately not the
    #: JWT secret: receivers must hold this key, and the JWT key would let them mint tokens.
    webhook_secret: str | None = field(default=None, repr=False)
    aws_endpoint_url: str | None = None
    #: LocalStack's ``host:port`` (``LOCALSTACK_HOST``), used when no endpoint URL is set.
    localstack_host: str | None = None
    log_format: str = "text"
    #: Default lease length handed to workers that do not ask for one.
    lease_seconds: int = 30
    #: How long a finished task's Redis hash is kept so that late outcomes are refused
    #: with the right reason (the durable record lives in Postgres regardless).
    finished_ttl_seconds: int = 86_400
    #: Terminal tasks older than this are purged from Postgres by the retention job.
    retention_days: int = 30
    #: Accept a Redis whose maxmemory-policy may evict keys (managed Redis hides CONFIG).
    allow_evicting_redis: bool = False
    #: Seconds a Redis or Postgres call may take before the request answers 503.
    io_timeout_seconds: float = 1.5
    #: Handler modules a worker imports, comma-separated (``dtq worker --tasks``).
    tasks: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from ``DTQ_*`` variables (and ``AWS_ENDPOINT_URL``)."""
        values: dict[str, Any] = {}
        parsers: dict[str, Callable[[str, str], Any]] = {
            "redis_cluster": _bool,
            "allow_evicting_redis": _bool,
            "jwt_ttl_seconds": _positive_int,
            "max_payload_bytes": _positive_int,
            "max_body_bytes": _positive_int,
            "lease_seconds": _positive_int,
            "finished_ttl_seconds": _positive_int,
            "retention_days": _positive_int,
            "io_timeout_seconds": _positive_float,
        }
        for f in fields(cls):
            var = _FOREIGN_VARS.get(f.name, f"DTQ_{f.name.upper()}")
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            values[f.name] = parsers.get(f.name, _str)(var, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if urlsplit(self.redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"DTQ_REDIS_URL: expected redis://, rediss:// or unix://, got {self.redis_url!r}"
            )
        if urlsplit(self.database_url).scheme not in ("postgresql", "postgres"):
            raise ConfigError("DTQ_DATABASE_URL: expected a postgresql:// URL")
        if not _PREFIX_RE.match(self.key_prefix):
            raise ConfigError("DTQ_KEY_PREFIX: 1-64 characters of [A-Za-z0-9_.:-]")
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < 32:
            raise ConfigError("DTQ_JWT_SECRET: must be at least 32 bytes")
        if self.webhook_secret is not None and len(self.webhook_secret.encode()) < 16:
            raise ConfigError("DTQ_WEBHOOK_SECRET: must be at least 16 bytes")
        if self.jwt_algorithm not in ("HS256", "HS384", "HS512"):
            raise ConfigError("DTQ_JWT_ALGORITHM: one of HS256, HS384, HS512")
        if self.log_format not in ("text", "json"):
            raise ConfigError("DTQ_LOG_FORMAT: 'text' or 'json'")

    def aws_endpoint(self, service: str) -> str | None:
        """Where boto3 sends ``service`` calls: AWS_ENDPOINT_URL, else LocalStack's edge
        (through localstack-client, which knows its per-service layout), else real AWS."""
        if self.aws_endpoint_url:
            return self.aws_endpoint_url
        if self.localstack_host:
            from localstack_client.config import get_service_endpoint

            endpoint: str | None = get_service_endpoint(service, self.localstack_host)
            return endpoint
        return None

    @property
    def database_name(self) -> str:
        return urlsplit(self.database_url).path.lstrip("/") or "postgres"


def _str(var: str, raw: str) -> str:
    return raw


def _bool(var: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{var}: expected true or false, got {raw!r}")


def _positive_int(var: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{var}: expected an integer, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{var}: must be positive, got {value}")
    return value


def _positive_float(var: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{var}: expected a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{var}: must be positive, got {value}")
    return value
