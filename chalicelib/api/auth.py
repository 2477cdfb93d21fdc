"""Bearer JWTs: issuing them, verifying them, and checking the caller's role.

Every verification failure raises the same :class:`Unauthorized` message, so a caller
cannot learn which check failed (a wrong key, an expired token, a forged claim).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import jwt

from chalicelib.core.clock import utcnow
from chalicelib.core.errors import ConfigError, Forbidden, Unauthorized

INVALID_TOKEN = "invalid or expired token"

#: RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
_MIN_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}

_REQUIRED_CLAIMS = ["sub", "role", "iat", "exp", "iss", "aud", "jti"]
#: Tokens whose signature this process has verified (cleared when full).
_VERIFIED_CACHE = 4096

# RFC 6750 §2.1 (token68); the scheme name is case-insensitive (RFC 7235 §2.1).
_BEARER_RE = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +(?P<token>[A-Za-z0-9\-._~+/]+=*)")


class Role(StrEnum):
    ADMIN = "admin"
    WORKER = "worker"


_ROLES = frozenset(role.value for role in Role)


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role
    jti: str


class TokenIssuer:
    def __init__(
        self,
        secret: bytes,
        algorithm: str = "HS256",
        issuer: str = "dtq",
        audience: str = "dtq-api",
        ttl_seconds: int = 3600,
        leeway_seconds: int = 0,
    ) -> None:
        if algorithm not in _MIN_KEY_BYTES:
            raise ConfigError("DTQ_JWT_ALGORITHM: one of HS256, HS384, HS512")
        if len(secret) < _MIN_KEY_BYTES[algorithm]:
            raise ConfigError(
                f"DTQ_JWT_SECRET: {algorithm} needs at least {_MIN_KEY_BYTES[algorithm]} bytes"
            )
        if ttl_seconds <= 0:
            raise ConfigError("DTQ_JWT_TTL_SECONDS: must be positive")
        if leeway_seconds < 0:
            raise ConfigError("JWT leeway must not be negative")
        self._secret = secret
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self.leeway_seconds = leeway_seconds
        self._verified: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"TokenIssuer(algorithm={self.algorithm!r}, issuer={self.issuer!r})"

    def issue(self, sub: str, role: Role, now: datetime) -> tuple[str, int]:
        """A signed token for ``sub`` and the seconds until it expires."""
        iat = _seconds(now)
        claims = {
            "sub": sub,
            "role": Role(role).value,
            "iat": iat,
            "exp": iat + self.ttl_seconds,
            "iss": self.issuer,
            "aud": self.audience,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=self.algorithm), self.ttl_seconds

    def verify(
        self,
        token: str,
        now: datetime | None = None,
        is_revoked: Callable[[str], bool] | None = None,
    ) -> Principal:
        """The principal ``token`` names, or :class:`Unauthorized` if it is not valid now.

        ``is_revoked`` is asked about the token's ``jti`` only after every other check
        passed; its own failures (say, Redis being down) propagate rather than turning
        into a 401, so an outage is not reported as a bad token.
        """
        claims = self._decode(token)
        principal = self._check(claims, _seconds(now or utcnow()))
        if is_revoked is not None and is_revoked(principal.jti):
            raise Unauthorized(INVALID_TOKEN)
        return principal

    def _decode(self, token: str) -> dict[str, Any]:
        # The signature check is most of a request's auth cost and its result depends on
        # the token and this issuer's fixed key only; times are checked on every call.
        claims = self._verified.get(token)
        if claims is None:
            claims = self._verify_signature(token)
            if len(self._verified) >= _VERIFIED_CACHE:
                self._verified.clear()  # bounded; clients re-use a token for an hour
            self._verified[token] = claims
        return claims

    def _verify_signature(self, token: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                self._secret,
                # Pinned: never let the token's own header choose how it is checked.
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": _REQUIRED_CLAIMS,
                    "strict_aud": True,
                    "enforce_minimum_key_length": True,
                    # PyJWT compares these with the real clock; _check uses ``now``.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            raise Unauthorized(INVALID_TOKEN) from None

    def _check(self, claims: dict[str, Any], now: int) -> Principal:
        iat, exp, nbf = claims["iat"], claims["exp"], claims.get("nbf", 0)
        sub, role, jti = claims["sub"], claims["role"], claims["jti"]
        valid = (
            _is_int(iat)
            and _is_int(exp)
            and _is_int(nbf)
            and iat <= now + self.leeway_seconds
            and nbf <= now + self.leeway_seconds
            and now < exp + self.leeway_seconds
            and isinstance(sub, str)
            and sub != ""
            and isinstance(jti, str)
            and jti != ""
            and isinstance(role, str)
            and role in _ROLES
        )
        if not valid:
            raise Unauthorized(INVALID_TOKEN)
        return Principal(sub=sub, role=Role(role), jti=jti)


def parse_bearer(header_value: str | None) -> str:
    """The token from an ``Authorization: Bearer <token>`` header value."""
    if not header_value:
        raise Unauthorized("authentication required")
    match = _BEARER_RE.fullmatch(header_value.strip())
    if match is None:
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    return match["token"]


def require_role(principal: Principal, allowed: Collection[Role]) -> None:
    if principal.role not in allowed:
        raise Forbidden()


def _seconds(now: datetime) -> int:
    # A naive datetime would be read as local time and shift every exp by the offset.
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp())


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
