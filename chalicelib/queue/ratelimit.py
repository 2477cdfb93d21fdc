"""Token buckets in Redis, shared by every API instance (``lua/token_bucket.lua``).

Used for failed logins per username: a login takes a token before the password is
checked and gives it back when the password was right, so concurrent guesses can never
exceed the budget and a user who knows the password never spends it.
"""

from __future__ import annotations

from typing import Any

from chalicelib.core.errors import RateLimited
from chalicelib.queue import lua

#: Failed logins one username may have in a burst...
LOGIN_BURST = 5
#: ... after which one more attempt is allowed every 1 / LOGIN_REFILL_PER_S seconds.
LOGIN_REFILL_PER_S = 1 / 30


class TokenBucket:
    def __init__(self, redis: Any, capacity: float, refill_per_s: float) -> None:
        self._script = redis.register_script(lua.source("token_bucket"))
        self.capacity = capacity
        self.refill_per_s = refill_per_s

    def take(self, key: str) -> None:
        """Take one token or raise :class:`RateLimited` with the seconds to wait."""
        allowed, retry_after_ms = self._script(
            keys=[key], args=[self.capacity, self.refill_per_s, 1]
        )
        if not allowed:
            raise RateLimited(
                "too many failed attempts; try again later",
                retry_after_seconds=-(-int(retry_after_ms) // 1000),
            )

    def give_back(self, key: str) -> None:
        self._script(keys=[key], args=[self.capacity, self.refill_per_s, -1])
