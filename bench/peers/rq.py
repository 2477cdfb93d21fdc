"""RQ: SimpleWorker (no fork per job), results not kept, bulk via ``enqueue_many``."""

from __future__ import annotations

import rq

from bench.peers.base import Peer, script
from bench.stamp import stamp


def noop() -> None:
    return None


def stamp_task(t0: int) -> None:
    stamp(t0)


class RQ(Peer):
    name = "rq"
    bulk_supported = True
    threads_supported = True

    def __init__(self) -> None:
        super().__init__()
        self.queue = rq.Queue("bench", connection=self.redis)

    def enqueue_noops(self, n: int) -> None:
        enqueue = self.queue.enqueue
        for _ in range(n):
            enqueue(noop, result_ttl=0)

    def enqueue_noops_bulk(self, n: int) -> None:
        data = [rq.Queue.prepare_data(noop, result_ttl=0) for _ in range(n)]
        self.queue.enqueue_many(data)

    def enqueue_stamp(self, t0_ns: int, *, last: bool = False) -> None:
        self.queue.enqueue(stamp_task, t0_ns, result_ttl=0)

    def worker_commands(self, processes: int) -> list[list[str]]:
        cmd = [
            script("rq"),
            "worker",
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--url",
            self.url,
            "--logging_level",
            "WARNING",
            "bench",
        ]
        return [cmd] * processes


def make() -> RQ:
    return RQ()
