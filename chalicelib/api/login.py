"""``POST /auth/login``: users in Postgres, scrypt hashes, per-username rate limit.

An unknown user and a wrong password get the same answer after the same work (the
password is checked against a dummy hash), so neither the message nor the timing tells
which usernames exist.
"""

from __future__ import annotations

from typing import Any

from chalicelib.api.auth import Role
from chalicelib.api.web import Web
from chalicelib.core import passwords
from chalicelib.core.clock import utcnow
from chalicelib.core.errors import Unauthorized
from chalicelib.core.forms import Form

BAD_CREDENTIALS = "invalid username or password"
#: Long enough for any passphrase; short enough that hashing it costs nothing extra.
MAX_PASSWORD_CHARS = 1024


def login(web: Web, body: Any) -> dict[str, Any]:
    form = Form(body, {"username", "password"})
    username = form.text("username", max_len=200)
    password = form.text("password", max_len=MAX_PASSWORD_CHARS)
    form.done()
    assert username is not None and password is not None
    bucket = web.services.keys.login_failures(username)
    web.logins.take(bucket)
    user = web.services.store.get_user(username)
    stored = user["password_hash"] if user is not None else passwords.DUMMY_HASH
    if not passwords.verify_password(password, stored) or user is None:
        raise Unauthorized(BAD_CREDENTIALS)
    web.logins.give_back(bucket)
    token, expires_in = web.issuer.issue(username, Role(user["role"]), utcnow())
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "role": user["role"],
    }
