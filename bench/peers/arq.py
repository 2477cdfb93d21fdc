"""arq: its default worker (max_jobs 10), results not kept."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings

from bench.peers.base import AsyncPeer, redis_url, script
from bench.stamp import stamp


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def stamp_task(ctx: dict[str, Any], t0: int) -> None:
    stamp(t0)


class WorkerSettings:
    functions = [noop, stamp_task]
    redis_settings = RedisSettings.from_dsn(redis_url())
    keep_result = 0


class ArqPeer(AsyncPeer):
    name = "arq"

    def __init__(self) -> None:
        super().__init__()
        self.pool = self.run(create_pool(RedisSettings.from_dsn(self.url)))

    def enqueue_noops(self, n: int) -> None:
        async def go() -> None:
            for _ in range(n):
                await self.pool.enqueue_job("noop")

        self.run(go())

    def enqueue_stamp(self, t0_ns: int, *, last: bool = False) -> None:
        # arq orders its queue by enqueue time in ms, ties by random job id: defer the
        # last stamp so that it really runs last.
        defer = timedelta(milliseconds=5) if last else None
        self.run(self.pool.enqueue_job("stamp_task", t0_ns, _defer_by=defer))

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[script("arq"), "bench.peers.arq.WorkerSettings"]] * processes

    def close(self) -> None:
        self.run(self.pool.aclose())
        super().close()


def make() -> ArqPeer:
    return ArqPeer()
