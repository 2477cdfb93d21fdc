"""Dramatiq: Redis broker, one process with one thread per worker process."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peers.base import Peer, redis_url, script
from bench.stamp import stamp

broker = RedisBroker(url=redis_url())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop() -> None:
    return None


@dramatiq.actor(queue_name="bench", max_retries=0)
def stamp_task(t0: int) -> None:
    stamp(t0)


class DramatiqPeer(Peer):
    name = "dramatiq"
    threads_supported = True

    def enqueue_noops(self, n: int) -> None:
        send = noop.send
        for _ in range(n):
            send()

    def enqueue_stamp(self, t0_ns: int, *, last: bool = False) -> None:
        stamp_task.send(t0_ns)

    def worker_commands(self, processes: int) -> list[list[str]]:
        cmd = [script("dramatiq"), "bench.peers.dramatiq", "--processes", "1", "--threads", "1"]
        return [cmd] * processes


def make() -> DramatiqPeer:
    return DramatiqPeer()
