from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.core.errors import ConfigError
from chalicelib.core.settings import Settings
from chalicelib.service.secrets import default_client, load_jwt_secret

SECRET = "k" * 24 + " spaced/+=\u00e9 " + "z" * 8
SECRET_ID = "dtq/jwt"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto-backed Secrets Manager client, isolated from any real AWS setup."""
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("secretsmanager")


def from_sm(**overrides: Any) -> Settings:
    return Settings(jwt_secret_id=SECRET_ID, **overrides)


def never_called(endpoint_url: str | None) -> Any:
    raise AssertionError("Secrets Manager must not be asked")


def test_env_secret_is_used_verbatim() -> None:
    settings = Settings(jwt_secret=SECRET)
    assert load_jwt_secret(settings, client_factory=never_called) == SECRET.encode()


def test_env_secret_wins_over_secret_id() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_secret_id=SECRET_ID)
    assert load_jwt_secret(settings, client_factory=never_called) == SECRET.encode()


def test_short_env_secret_is_refused_without_echoing_it() -> None:
    # Settings.validate refuses this too; load_jwt_secret must not rely on it having run.
    with pytest.raises(ConfigError) as err:
        load_jwt_secret(Settings(jwt_secret="short-secret"), client_factory=never_called)
    assert "DTQ_JWT_SECRET" in str(err.value)
    assert "short-secret" not in str(err.value)


def test_neither_set_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="DTQ_JWT_SECRET"):
        load_jwt_secret(Settings(), client_factory=never_called)


def test_raw_secret_string(aws: Any) -> None:
    aws.create_secret(Name=SECRET_ID, SecretString=SECRET)
    assert load_jwt_secret(from_sm()) == SECRET.encode()


def test_json_secret_string(aws: Any) -> None:
    aws.create_secret(Name=SECRET_ID, SecretString=json.dumps({"secret": SECRET, "note": "x"}))
    assert load_jwt_secret(from_sm()) == SECRET.encode()


def test_raw_secret_that_happens_to_be_json_scalar(aws: Any) -> None:
    digits = "1234567890" * 4
    aws.create_secret(Name=SECRET_ID, SecretString=digits)
    assert load_jwt_secret(from_sm()) == digits.encode()


def test_json_object_without_secret_key_is_refused(aws: Any) -> None:
    aws.create_secret(Name=SECRET_ID, SecretString=json.dumps({"key": SECRET}))
    with pytest.raises(ConfigError, match="DTQ_JWT_SECRET_ID") as err:
        load_jwt_secret(from_sm())
    assert SECRET not in str(err.value)


def test_short_stored_secret_is_refused_without_echoing_it(aws: Any) -> None:
    aws.create_secret(Name=SECRET_ID, SecretString="tiny-stored-secret")
    with pytest.raises(ConfigError, match="at least 32 bytes") as err:
        load_jwt_secret(from_sm())
    assert "tiny-stored-secret" not in str(err.value)


def test_missing_secret_is_a_config_error(aws: Any) -> None:
    with pytest.raises(ConfigError, match="ResourceNotFoundException"):
        load_jwt_secret(from_sm())


def test_binary_only_secret_is_refused(aws: Any) -> None:
    aws.create_secret(Name=SECRET_ID, SecretBinary=SECRET.encode())
    with pytest.raises(ConfigError, match="SecretString"):
        load_jwt_secret(from_sm())


def test_endpoint_url_reaches_the_client_factory(aws: Any) -> None:
    aws.create_secret(Name=SECRET_ID, SecretString=SECRET)
    seen: list[str | None] = []

    def factory(endpoint_url: str | None) -> Any:
        seen.append(endpoint_url)
        return aws  # moto intercepts only AWS hostnames, so keep the real endpoint

    settings = from_sm(aws_endpoint_url="http://localstack:4566")
    assert load_jwt_secret(settings, client_factory=factory) == SECRET.encode()
    assert seen == ["http://localstack:4566"]


def test_default_client_honours_endpoint_url(aws: Any) -> None:
    assert default_client("http://localstack:4566").meta.endpoint_url == "http://localstack:4566"
    assert "amazonaws.com" in default_client(None).meta.endpoint_url


def test_secret_never_logged(aws: Any, caplog: pytest.LogCaptureFixture) -> None:
    aws.create_secret(Name=SECRET_ID, SecretString=SECRET)
    with caplog.at_level(logging.DEBUG):
        load_jwt_secret(from_sm())
        load_jwt_secret(Settings(jwt_secret=SECRET))
    ours = [r for r in caplog.records if r.name.startswith("chalicelib")]
    assert all(SECRET not in r.getMessage() for r in ours)
