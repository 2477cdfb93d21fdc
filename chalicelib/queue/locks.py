"""A distributed lock for task handlers: a *lease*, not a mutex.

The holder owns the lock only until its lease ends (server clock); a holder paused
longer than that (GC, SIGSTOP, a lost network) may find that someone else has taken
it. That is why every acquisition carries a **fencing token** that grows strictly for
the lifetime of the lock: pass it to the resource you protect and let the resource
refuse writes carrying an older fence (Kleppmann, "How to do distributed locking").

Release and extension are owner-checked in one Lua script each, so a holder whose lease
ran out can never free or prolong somebody else's lease.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from redis.commands.core import Script
from redis.exceptions import NoScriptError

from chalicelib.core.errors import DTQError
from chalicelib.queue import lua
from chalicelib.queue.keys import Keys

#: A lock hash untouched this long is dropped (its fence counter restarts afterwards,
#: which is harmless: nobody can still hold a lease that old).
IDLE_TTL_MS = 7 * 86_400_000
#: Poll interval bounds while waiting for a held lock (the wait is also capped by the
#: holder's remaining lease, which the acquire script reports).
_MIN_WAIT_S, _MAX_WAIT_S = 0.005, 0.25


class LockNotAcquired(DTQError):
    """The lock is held by someone else."""


class LockLost(DTQError):
    """The lock's lease ended before it was released or extended."""


class LockScripts:
    """The three lock scripts, registered once per Redis client.

    Given ``on_new_server`` (the queue's hook, chalicelib/service/epoch.py), a Redis that lost
    its script cache is checked before a lock script runs there again, as for the queue's
    scripts: a fence handed out after Redis may have lost writes starts a new epoch."""

    def __init__(self, client: Any, on_new_server: Callable[[], object] | None = None) -> None:
        self.redis = client
        self._on_new_server = on_new_server
        self._acquire: Script = client.register_script(lua.source("lock_acquire"))
        self._release: Script = client.register_script(lua.source("lock_release"))
        self._extend: Script = client.register_script(lua.source("lock_extend"))

    def _call(self, script: Script, run: Callable[[], Any]) -> Any:
        try:
            return run()
        except NoScriptError:
            if self._on_new_server is not None:
                self._on_new_server()
            self.redis.script_load(script.script)
            return run()

    def acquire(self, key: str, epoch_key: str, args: list[Any]) -> Any:
        def run() -> Any:
            # The lock hash is outside every queue's slot, so the epoch comes as an
            # argument, read again after a new-server check may have raised it.
            epoch = self.redis.hget(epoch_key, "ep") or 0
            return self.redis.evalsha(self._acquire.sha, 1, key, *args, epoch)

        return self._call(self._acquire, run)

    def _plain(self, script: Script, key: str, args: list[Any]) -> Any:
        return self._call(script, lambda: self.redis.evalsha(script.sha, 1, key, *args))

    def release(self, key: str, args: list[Any]) -> Any:
        return self._plain(self._release, key, args)

    def extend(self, key: str, args: list[Any]) -> Any:
        return self._plain(self._extend, key, args)


class DistributedLock:
    """One holder's handle on the lock ``name``.

    >>> with DistributedLock(scripts, keys, "invoice:42", ttl_s=30) as fence:
    ...     storage.write(data, fence=fence)
    """

    def __init__(
        self,
        scripts: LockScripts,
        keys: Keys,
        name: str,
        *,
        ttl_s: float = 30.0,
        owner: str | None = None,
    ) -> None:
        self._scripts = scripts
        self.key = keys.user_lock(name)
        self._epoch_key = keys.epoch
        self.name = name
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.owner = owner or secrets.token_hex(12)
        #: Fencing token of the current lease, None while not held.
        self.fence: int | None = None

    def try_acquire(self) -> tuple[int | None, int]:
        """(fence, 0) when acquired, else (None, ms until the holder's lease ends)."""
        ok, value = self._scripts.acquire(
            self.key, self._epoch_key, [self.owner, self.ttl_ms, IDLE_TTL_MS]
        )
        if ok:
            self.fence = int(value)
            return self.fence, 0
        return None, int(value)

    def acquire(self, *, blocking: bool = True, timeout_s: float | None = None) -> int:
        """Take the lock; returns its fencing token. Raises LockNotAcquired when it is
        held and ``blocking`` is False or ``timeout_s`` passes."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        wait_s = _MIN_WAIT_S
        while True:
            fence, remaining_ms = self.try_acquire()
            if fence is not None:
                return fence
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                raise LockNotAcquired(f"lock {self.name!r} is held by another owner")
            # Jittered, growing waits so that twenty contenders do not poll in lockstep.
            pause = min(wait_s * (0.5 + secrets.randbelow(1000) / 1000), remaining_ms / 1000)
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            threading.Event().wait(max(pause, 0.001))
            wait_s = min(wait_s * 2, _MAX_WAIT_S)

    def release(self) -> bool:
        """True when released; False when the lease had already ended or was never ours."""
        if self.fence is None:
            return False
        released = bool(self._scripts.release(self.key, [self.owner, self.fence]))
        self.fence = None
        return released

    def extend(self, ttl_s: float | None = None) -> int:
        """Push the lease deadline ``ttl_s`` (default: the lock's ttl) from now; returns the
        new deadline (server ms). Raises LockLost once the lease is gone."""
        ttl_ms = self.ttl_ms if ttl_s is None else max(1, int(ttl_s * 1000))
        if self.fence is None:
            raise LockLost(f"lock {self.name!r} is not held")
        ok, deadline = self._scripts.extend(self.key, [self.owner, self.fence, ttl_ms, IDLE_TTL_MS])
        if not ok:
            self.fence = None
            raise LockLost(f"the lease of lock {self.name!r} ended")
        return int(deadline)

    def __enter__(self) -> int:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
