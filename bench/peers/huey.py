"""Huey: Redis storage (blocking pop), results off, one worker thread per consumer."""

from __future__ import annotations

from huey import RedisHuey

from bench.peers.base import Peer, redis_url, script
from bench.stamp import stamp

huey = RedisHuey("bench", url=redis_url(), results=False)


@huey.task()
def noop() -> None:
    return None


@huey.task()
def stamp_task(t0: int) -> None:
    stamp(t0)


class HueyPeer(Peer):
    name = "huey"
    threads_supported = True

    def enqueue_noops(self, n: int) -> None:
        for _ in range(n):
            noop()

    def enqueue_stamp(self, t0_ns: int, *, last: bool = False) -> None:
        stamp_task(t0_ns)

    def worker_commands(self, processes: int) -> list[list[str]]:
        cmd = [
            script("huey_consumer"),
            "bench.peers.huey.huey",
            "-w",
            "1",
            "-k",
            "thread",
            "-n",
            "-q",
        ]
        return [cmd] * processes


def make() -> HueyPeer:
    return HueyPeer()
