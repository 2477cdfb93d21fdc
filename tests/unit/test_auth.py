from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from chalicelib.api.auth import (
    INVALID_TOKEN,
    Principal,
    Role,
    TokenIssuer,
    parse_bearer,
    require_role,
)
from chalicelib.core.errors import ConfigError, Forbidden, Unauthorized

SECRET = b"0123456789abcdef" * 4  # 64 bytes, enough for HS512 too
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
TTL = 600


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(SECRET, "HS256", "dtq", "dtq-api", TTL)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj).encode())


def claims(**changes: Any) -> dict[str, Any]:
    """A complete, valid claim set; a change to ``None`` removes that claim."""
    iat = int(NOW.timestamp())
    base: dict[str, Any] = {
        "sub": "alice",
        "role": "worker",
        "iat": iat,
        "exp": iat + TTL,
        "iss": "dtq",
        "aud": "dtq-api",
        "jti": "a" * 32,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict[str, Any], key: bytes = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=alg)


def assert_rejected(issuer: TokenIssuer, token: str, now: datetime = NOW) -> None:
    with pytest.raises(Unauthorized) as err:
        issuer.verify(token, now=now)
    assert err.value.message == INVALID_TOKEN
    assert err.value.status == 401
    assert err.value.__cause__ is None  # no PyJWT detail chained into logs or responses


# --- issuing and the happy path ---------------------------------------------------------


def test_round_trip(issuer: TokenIssuer) -> None:
    token, expires_in = issuer.issue("alice", Role.ADMIN, NOW)
    assert expires_in == TTL
    principal = issuer.verify(token, now=NOW)
    assert principal.sub == "alice"
    assert principal.role is Role.ADMIN
    assert len(principal.jti) == 32
    int(principal.jti, 16)


def test_issued_claims(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("w-1", Role.WORKER, NOW)
    header = jwt.get_unverified_header(token)
    body = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert set(body) == {"sub", "role", "iat", "exp", "iss", "aud", "jti"}
    assert body["iat"] == int(NOW.timestamp())
    assert body["exp"] == body["iat"] + TTL
    assert (body["iss"], body["aud"], body["role"]) == ("dtq", "dtq-api", "worker")


def test_jti_is_unique(issuer: TokenIssuer) -> None:
    first = issuer.verify(issuer.issue("a", Role.WORKER, NOW)[0], now=NOW)
    second = issuer.verify(issuer.issue("a", Role.WORKER, NOW)[0], now=NOW)
    assert first.jti != second.jti


def test_valid_until_the_last_second(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("alice", Role.WORKER, NOW)
    issuer.verify(token, now=NOW + timedelta(seconds=TTL - 1))


def test_hs512_round_trip() -> None:
    strong = TokenIssuer(SECRET, "HS512", "dtq", "dtq-api", TTL)
    token, _ = strong.issue("alice", Role.ADMIN, NOW)
    assert strong.verify(token, now=NOW).role is Role.ADMIN


def test_default_now_is_the_real_clock(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("alice", Role.WORKER, datetime.now(UTC))
    assert issuer.verify(token).sub == "alice"
    stale, _ = issuer.issue("alice", Role.WORKER, datetime.now(UTC) - timedelta(days=1))
    with pytest.raises(Unauthorized):
        issuer.verify(stale)


def test_principal_is_frozen() -> None:
    principal = Principal("alice", Role.ADMIN, "j")
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.sub = "mallory"  # type: ignore[misc]


def test_repr_hides_secret(issuer: TokenIssuer) -> None:
    assert SECRET.decode() not in repr(issuer)


# --- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "alg"),
    [(b"x" * 31, "HS256"), (b"x" * 32, "HS512"), (SECRET, "none"), (SECRET, "RS256")],
)
def test_weak_or_unknown_configuration_is_refused(secret: bytes, alg: str) -> None:
    with pytest.raises(ConfigError):
        TokenIssuer(secret, alg, "dtq", "dtq-api", TTL)


def test_naive_now_is_a_programming_error(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError, match="timezone"):
        issuer.issue("alice", Role.ADMIN, NOW.replace(tzinfo=None))


# --- rejection -------------------------------------------------------------------------


def test_alg_none(issuer: TokenIssuer) -> None:
    body = b64json(claims(role="admin"))
    for alg in ("none", "None", "NONE"):
        header = b64json({"alg": alg, "typ": "JWT"})
        assert_rejected(issuer, f"{header}.{body}.")


def test_alg_none_with_a_real_signature_attached(issuer: TokenIssuer) -> None:
    _, _, sig = signed(claims()).split(".")
    assert_rejected(issuer, f"{b64json({'alg': 'none'})}.{b64json(claims())}.{sig}")


def test_wrong_key(issuer: TokenIssuer) -> None:
    assert_rejected(issuer, signed(claims(), key=b"another-secret-of-at-least-32-bytes!"))


def test_hs512_when_hs256_is_pinned(issuer: TokenIssuer) -> None:
    assert_rejected(issuer, signed(claims(), alg="HS512"))


def test_hs256_when_hs512_is_pinned() -> None:
    strong = TokenIssuer(SECRET, "HS512", "dtq", "dtq-api", TTL)
    assert_rejected(strong, signed(claims(), alg="HS256"))


def test_expired(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("alice", Role.WORKER, NOW)
    assert_rejected(issuer, token, now=NOW + timedelta(seconds=TTL))
    assert_rejected(issuer, token, now=NOW + timedelta(days=365))


def test_a_token_verified_once_still_expires(issuer: TokenIssuer) -> None:
    # Verified signatures are cached per process; the times are checked every call.
    token, _ = issuer.issue("alice", Role.WORKER, NOW)
    assert issuer.verify(token, now=NOW).sub == "alice"
    assert_rejected(issuer, token, now=NOW + timedelta(seconds=TTL))
    other = TokenIssuer("y" * 32, "HS256", "dtq", "dtq-api", TTL)
    assert_rejected(other, token, now=NOW)  # the cache belongs to one key


def test_leeway_is_opt_in() -> None:
    lenient = TokenIssuer(SECRET, "HS256", "dtq", "dtq-api", TTL, leeway_seconds=30)
    token, _ = lenient.issue("alice", Role.WORKER, NOW)
    lenient.verify(token, now=NOW + timedelta(seconds=TTL + 29))
    assert_rejected(lenient, token, now=NOW + timedelta(seconds=TTL + 30))


def test_issued_in_the_future(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("alice", Role.WORKER, NOW)
    assert_rejected(issuer, token, now=NOW - timedelta(seconds=1))


def test_not_yet_valid_nbf(issuer: TokenIssuer) -> None:
    assert_rejected(issuer, signed(claims(nbf=int(NOW.timestamp()) + 60)))


@pytest.mark.parametrize("claim", ["exp", "aud", "iss", "jti", "sub", "role", "iat"])
def test_missing_claim(issuer: TokenIssuer, claim: str) -> None:
    assert_rejected(issuer, signed(claims(**{claim: None})))


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "someone-else"},
        {"aud": ["dtq-api", "someone-else"]},
        {"iss": "evil"},
        {"role": "root"},
        {"role": "ADMIN"},
        {"role": ["admin"]},
        {"sub": ""},
        {"sub": 42},
        {"jti": ""},
        {"jti": 7},
        {"exp": "9999999999"},
        {"exp": 1e12},
        {"iat": True},
        {"iat": "now"},
    ],
    ids=repr,
)
def test_bad_claim_values(issuer: TokenIssuer, changes: dict[str, Any]) -> None:
    assert_rejected(issuer, signed(claims(**changes)))


def test_payload_re_encoded_as_admin_without_re_signing(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("w-1", Role.WORKER, NOW)
    header, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["role"] = "admin"
    assert_rejected(issuer, f"{header}.{b64json(body)}.{sig}")


def test_signature_stripped(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("alice", Role.WORKER, NOW)
    header, payload, _ = token.split(".")
    assert_rejected(issuer, f"{header}.{payload}.")
    assert_rejected(issuer, f"{header}.{payload}")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x",
        "garbage",
        "a.b.c",
        "...",
        "a.b.c.d.e",
        "\u00e9\u00e9.\u00e9.\u00e9",
        "Bearer abc",
        "eyJhbGciOiJIUzI1NiJ9..",
        f"{b64(b'[1]')}.{b64json(claims())}.c2ln",
        f"{b64json({'alg': 'HS256'})}.{b64(b'not json')}.c2ln",
        f"{b64json({'alg': 'HS256'})}.{b64(b'[]')}.c2ln",
        "A" * 100_000,
    ],
    ids=lambda t: repr(t[:30]),
)
def test_garbage(issuer: TokenIssuer, token: str) -> None:
    assert_rejected(issuer, token)


def test_valid_signature_over_non_object_payload(issuer: TokenIssuer) -> None:
    header = b64json({"alg": "HS256", "typ": "JWT"})
    body = b64(b'"just a string"')
    sig = jwt.api_jws.PyJWS().encode(b'"just a string"', SECRET, algorithm="HS256").split(".")[2]
    assert_rejected(issuer, f"{header}.{body}.{sig}")


# --- revocation ------------------------------------------------------------------------


def test_revoked_token(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("alice", Role.ADMIN, NOW)
    asked: list[str] = []

    def revoked(jti: str) -> bool:
        asked.append(jti)
        return True

    with pytest.raises(Unauthorized, match=INVALID_TOKEN):
        issuer.verify(token, now=NOW, is_revoked=revoked)
    assert len(asked) == 1


def test_not_revoked_token(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("alice", Role.ADMIN, NOW)
    principal = issuer.verify(token, now=NOW, is_revoked=lambda jti: False)
    assert principal.role is Role.ADMIN


def test_revocation_is_not_asked_about_invalid_tokens(issuer: TokenIssuer) -> None:
    def boom(jti: str) -> bool:
        raise AssertionError("asked")

    with pytest.raises(Unauthorized):
        issuer.verify(signed(claims(), key=b"k" * 32), now=NOW, is_revoked=boom)


def test_revocation_store_failure_propagates(issuer: TokenIssuer) -> None:
    token, _ = issuer.issue("alice", Role.ADMIN, NOW)

    def down(jti: str) -> bool:
        raise ConnectionError("redis down")

    with pytest.raises(ConnectionError):
        issuer.verify(token, now=NOW, is_revoked=down)


# --- Authorization header and roles ----------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer x", "x"),
        ("bearer x", "x"),
        ("BEARER  abc.def-_.ghi", "abc.def-_.ghi"),
        ("  Bearer tok==  ", "tok=="),
    ],
)
def test_parse_bearer(header: str, token: str) -> None:
    assert parse_bearer(header) == token


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "Basic x", "Bearer", "Bearer ", "Bearerx", "Bearer a b", "Token x", "x"],
)
def test_parse_bearer_rejects(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        parse_bearer(header)


def test_bearer_garbage_token_fails_verification(issuer: TokenIssuer) -> None:
    assert_rejected(issuer, parse_bearer("Bearer x"))


def test_require_role() -> None:
    admin = Principal("alice", Role.ADMIN, "j1")
    worker = Principal("w-1", Role.WORKER, "j2")
    require_role(admin, {Role.ADMIN})
    require_role(worker, (Role.ADMIN, Role.WORKER))
    with pytest.raises(Forbidden) as err:
        require_role(worker, {Role.ADMIN})
    assert err.value.status == 403
    with pytest.raises(Forbidden):
        require_role(admin, ())


def test_role_is_a_str_enum() -> None:
    assert Role("admin") is Role.ADMIN
    assert isinstance(Role.WORKER, str)
    assert f"{Role.WORKER}" == "worker"
    assert {r.value for r in Role} == {"admin", "worker"}
