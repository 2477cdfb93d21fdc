"""Password hashing with scrypt, stored as PHC strings.

``$scrypt$ln=17,r=8,p=1$<salt>$<hash>`` (standard base64, no padding). The cost sits in
the string so stored hashes keep verifying after the defaults are raised;
:func:`needs_rehash` tells a caller when to upgrade one after a successful login.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from functools import cache

# OWASP Password Storage Cheat Sheet minimum for scrypt.
LOG_N = 17
R = 8
P = 1
SALT_BYTES = 16
KEY_BYTES = 32

# A stored string is only as trustworthy as the database, so refuse costs that could
# exhaust a Lambda's memory or pin a CPU for minutes instead of running them.
_MAX_MEMORY_BYTES = 512 * 1024 * 1024
_MAX_LOG_N = 20
_MAX_P = 16

_PHC_RE = re.compile(
    r"\$scrypt\$ln=(?P<ln>[1-9][0-9]?),r=(?P<r>[1-9][0-9]{0,2}),p=(?P<p>[1-9][0-9]?)"
    r"\$(?P<salt>[A-Za-z0-9+/]+)\$(?P<hash>[A-Za-z0-9+/]+)"
)


@dataclass(frozen=True)
class _Parsed:
    log_n: int
    r: int
    p: int
    salt: bytes
    key: bytes


def hash_password(password: str, *, log_n: int = LOG_N) -> str:
    """Hash ``password`` with a fresh salt; ``log_n`` is lowered only by tests."""
    salt = os.urandom(SALT_BYTES)
    key = _scrypt(password, salt, log_n, R, P, KEY_BYTES)
    return f"$scrypt$ln={log_n},r={R},p={P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, phc: str) -> bool:
    """Whether ``password`` matches ``phc``; False (never an exception) if ``phc`` is bad."""
    parsed = _parse(phc)
    if parsed is None:
        return False
    try:
        key = _scrypt(password, parsed.salt, parsed.log_n, parsed.r, parsed.p, len(parsed.key))
    except ValueError:
        # Unencodable passwords (lone surrogates) and parameters OpenSSL refuses.
        return False
    return hmac.compare_digest(key, parsed.key)


def needs_rehash(phc: str) -> bool:
    """Whether ``phc`` was made with other than the current cost and sizes."""
    parsed = _parse(phc)
    if parsed is None:
        return True
    current = (LOG_N, R, P, SALT_BYTES, KEY_BYTES)
    return (parsed.log_n, parsed.r, parsed.p, len(parsed.salt), len(parsed.key)) != current


@cache
def _dummy_hash() -> str:
    return hash_password(os.urandom(16).hex())


def __getattr__(name: str) -> str:
    # ``DUMMY_HASH`` costs half a second to build, so it is made on first use rather
    # than at import (which would slow every cold start and CLI call). Verifying against
    # it when a user is unknown makes that answer take as long as a wrong password.
    if name == "DUMMY_HASH":
        return _dummy_hash()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int, dklen: int) -> bytes:
    need = _memory_bytes(log_n, r, p)
    if log_n > _MAX_LOG_N or p > _MAX_P or need > _MAX_MEMORY_BYTES:
        raise ValueError("scrypt cost out of range")
    # OpenSSL's default limit (32 MiB) is below the OWASP cost; twice the need leaves
    # room for accounting differences between OpenSSL versions.
    return hashlib.scrypt(
        password.encode(), salt=salt, n=1 << log_n, r=r, p=p, maxmem=2 * need, dklen=dklen
    )


def _memory_bytes(log_n: int, r: int, p: int) -> int:
    # What OpenSSL allocates: the V array plus the p-block B buffer.
    return 128 * r * ((1 << log_n) + 2 + p)


def _parse(phc: str) -> _Parsed | None:
    match = _PHC_RE.fullmatch(phc) if isinstance(phc, str) else None
    if match is None:
        return None
    try:
        salt = _unb64(match["salt"])
        key = _unb64(match["hash"])
    except (binascii.Error, ValueError):
        return None
    if len(salt) < 8 or not 16 <= len(key) <= 64:
        return None
    return _Parsed(int(match["ln"]), int(match["r"]), int(match["p"]), salt, key)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
