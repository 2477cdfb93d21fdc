"""taskiq with taskiq-redis's list queue broker, one worker process each."""

from __future__ import annotations

from taskiq_redis import ListQueueBroker

from bench.peers.base import AsyncPeer, redis_url, script
from bench.stamp import stamp

broker = ListQueueBroker(url=redis_url())


@broker.task(task_name="noop")
async def noop() -> None:
    return None


@broker.task(task_name="stamp")
async def stamp_task(t0: int) -> None:
    stamp(t0)


class TaskiqPeer(AsyncPeer):
    name = "taskiq"

    def __init__(self) -> None:
        super().__init__()
        self.run(broker.startup())

    def enqueue_noops(self, n: int) -> None:
        async def go() -> None:
            for _ in range(n):
                await noop.kiq()

        self.run(go())

    def enqueue_stamp(self, t0_ns: int, *, last: bool = False) -> None:
        self.run(stamp_task.kiq(t0_ns))

    def worker_commands(self, processes: int) -> list[list[str]]:
        cmd = [
            script("taskiq"),
            "worker",
            "bench.peers.taskiq:broker",
            "--workers",
            "1",
            "--log-level",
            "WARNING",
        ]
        return [cmd] * processes

    def close(self) -> None:
        self.run(broker.shutdown())
        super().close()


def make() -> TaskiqPeer:
    return TaskiqPeer()
