"""Who may log in: users in PostgreSQL, scrypt hashes, a per-username rate limit.

An unknown user and a wrong password get the same answer after the same work (the
password is checked against a dummy hash), so neither the message nor the timing tells
which usernames exist. A login takes a token of its username's bucket before the
password is checked and gives it back when the password was right, so concurrent
guesses can never exceed the budget and a user who knows the password never spends it.
"""

from __future__ import annotations

from chalicelib.core import passwords
from chalicelib.core.errors import Unauthorized
from chalicelib.queue.keys import Keys
from chalicelib.queue.ratelimit import LOGIN_BURST, LOGIN_REFILL_PER_S, TokenBucket
from chalicelib.record.store import Store

BAD_CREDENTIALS = "invalid username or password"


class Logins:
    def __init__(self, store: Store, redis: object, keys: Keys) -> None:
        self.store = store
        self.keys = keys
        self.failures = TokenBucket(redis, LOGIN_BURST, LOGIN_REFILL_PER_S)

    def role_of(self, username: str, password: str) -> str:
        """The user's role; Unauthorized on any bad credential, RateLimited after too
        many failures for this username."""
        bucket = self.keys.login_failures(username)
        self.failures.take(bucket)
        user = self.store.get_user(username)
        stored = user["password_hash"] if user is not None else passwords.DUMMY_HASH
        if not passwords.verify_password(password, stored) or user is None:
            raise Unauthorized(BAD_CREDENTIALS)
        self.failures.give_back(bucket)
        return str(user["role"])
