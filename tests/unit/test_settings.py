"""Settings from the environment: defaults, parsing, one-line errors naming the variable."""

from __future__ import annotations

import pytest

from chalicelib.core.errors import ConfigError
from chalicelib.core.settings import Settings


def test_defaults_match_the_documented_table() -> None:
    s = Settings.from_env({})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.database_url == "postgresql://postgres@127.0.0.1:5432/dtq"
    assert (s.key_prefix, s.jwt_ttl_seconds, s.max_payload_bytes) == ("dtq", 3600, 262144)
    assert (s.admin_username, s.worker_username, s.log_format) == ("admin", "worker", "text")
    assert s.redis_cluster is False and s.database_name == "dtq"


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "DTQ_REDIS_CLUSTER": "true",
            "DTQ_KEY_PREFIX": "prod",
            "DTQ_JWT_TTL_SECONDS": "60",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
            "DTQ_LOG_FORMAT": "json",
            "DTQ_JWT_SECRET": "s" * 32,
        }
    )
    assert s.redis_cluster and s.key_prefix == "prod" and s.jwt_ttl_seconds == 60
    assert s.aws_endpoint_url == "http://127.0.0.1:5000" and s.log_format == "json"
    assert "s" * 32 not in repr(s)  # secrets never reach logs through repr


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"DTQ_REDIS_URL": "http://x"}, "DTQ_REDIS_URL"),
        ({"DTQ_DATABASE_URL": "mysql://x"}, "DTQ_DATABASE_URL"),
        ({"DTQ_KEY_PREFIX": "has space"}, "DTQ_KEY_PREFIX"),
        ({"DTQ_JWT_SECRET": "short"}, "DTQ_JWT_SECRET"),
        ({"DTQ_JWT_TTL_SECONDS": "soon"}, "DTQ_JWT_TTL_SECONDS"),
        ({"DTQ_MAX_PAYLOAD_BYTES": "-5"}, "DTQ_MAX_PAYLOAD_BYTES"),
        ({"DTQ_REDIS_CLUSTER": "maybe"}, "DTQ_REDIS_CLUSTER"),
        ({"DTQ_LOG_FORMAT": "xml"}, "DTQ_LOG_FORMAT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    assert str(err.value).startswith(var)
    assert "\n" not in str(err.value)


def test_aws_endpoint_prefers_the_url_then_localstack_then_real_aws() -> None:
    assert Settings.from_env({}).aws_endpoint("s3") is None
    local = Settings.from_env({"LOCALSTACK_HOST": "localstack:4566"})
    assert local.aws_endpoint("s3") == "http://localstack:4566"
    assert local.aws_endpoint("secretsmanager") == "http://localstack:4566"
    both = Settings.from_env(
        {"LOCALSTACK_HOST": "x:1", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}
    )
    assert both.aws_endpoint("sns") == "http://127.0.0.1:5000"
