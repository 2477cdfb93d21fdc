"""What every peer adapter shares: the Redis URL, the venv's scripts, flushing."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis

T = TypeVar("T")

#: The peer's Redis database (set by the harness for the driver and the workers alike,
#: so module-level app/broker objects can be built at import, as each peer expects).
URL_ENV = "BENCH_REDIS_URL"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def redis_url() -> str:
    return os.environ.get(URL_ENV, "redis://127.0.0.1:6379/1")


def script(name: str) -> str:
    """A console script of the venv running this process."""
    return os.path.join(os.path.dirname(sys.executable), name)


class Peer:
    """Defaults for a peer adapter; subclasses fill in the rest of ``bench.drive.System``."""

    name = "peer"
    bulk_supported = False
    threads_supported = False

    def __init__(self) -> None:
        self.url = redis_url()
        self.redis = redis.Redis.from_url(self.url)

    def reset(self) -> None:
        self.redis.flushdb()

    def enqueue_noops_bulk(self, n: int) -> None:
        raise NotImplementedError(f"{self.name} has no bulk enqueue")

    def worker_env(self) -> dict[str, str]:
        return {URL_ENV: self.url, "PYTHONPATH": REPO}

    def close(self) -> None:
        self.redis.flushdb()
        self.redis.close()


class AsyncPeer(Peer):
    """For asyncio peers: one event loop for the adapter's lifetime."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)
