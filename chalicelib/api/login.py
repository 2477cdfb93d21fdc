"""``POST /auth/login``: the credentials are checked by ``service/logins.py`` (users in
PostgreSQL, scrypt, a per-username rate limit); this module issues the token."""

from __future__ import annotations

from typing import Any

from chalicelib.api.auth import Role
from chalicelib.api.web import Web
from chalicelib.core.clock import utcnow
from chalicelib.core.forms import Form

#: Long enough for any passphrase; short enough that hashing it costs nothing extra.
MAX_PASSWORD_CHARS = 1024


def login(web: Web, body: Any) -> dict[str, Any]:
    form = Form(body, {"username", "password"})
    username = form.text("username", max_len=200)
    password = form.text("password", max_len=MAX_PASSWORD_CHARS)
    form.done()
    assert username is not None and password is not None
    role = web.logins.role_of(username, password)
    token, expires_in = web.issuer.issue(username, Role(role), utcnow())
    return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "role": role}
