"""SAQ: its default worker (concurrency 10) on a Redis queue."""

from __future__ import annotations

from typing import Any

from saq import Queue

from bench.peers.base import AsyncPeer, redis_url, script
from bench.stamp import stamp

queue = Queue.from_url(redis_url(), name="bench")


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def stamp_task(ctx: dict[str, Any], *, t0: int) -> None:
    stamp(t0)


settings = {"queue": queue, "functions": [noop, stamp_task], "concurrency": 10}


class SaqPeer(AsyncPeer):
    name = "saq"

    def __init__(self) -> None:
        super().__init__()
        self.queue = Queue.from_url(self.url, name="bench")
        self.run(self.queue.connect())

    def enqueue_noops(self, n: int) -> None:
        async def go() -> None:
            for _ in range(n):
                await self.queue.enqueue("noop")

        self.run(go())

    def enqueue_stamp(self, t0_ns: int, *, last: bool = False) -> None:
        self.run(self.queue.enqueue("stamp_task", t0=t0_ns))

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[script("saq"), "bench.peers.saq.settings", "--workers", "1"]] * processes

    def close(self) -> None:
        self.run(self.queue.disconnect())
        super().close()


def make() -> SaqPeer:
    return SaqPeer()
