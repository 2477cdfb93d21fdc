"""Celery: solo pool, results ignored, no gossip/mingle/heartbeat (its fast setup)."""

from __future__ import annotations

from celery import Celery

from bench.peers.base import Peer, redis_url, script
from bench.stamp import stamp

app = Celery("bench", broker=redis_url())
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop() -> None:
    return None


@app.task(name="stamp")
def stamp_task(t0: int) -> None:
    stamp(t0)


class CeleryPeer(Peer):
    name = "celery"
    threads_supported = True

    def enqueue_noops(self, n: int) -> None:
        send = noop.delay
        for _ in range(n):
            send()

    def enqueue_stamp(self, t0_ns: int, *, last: bool = False) -> None:
        stamp_task.delay(t0_ns)

    def worker_commands(self, processes: int) -> list[list[str]]:
        cmd = [
            script("celery"),
            "-A",
            "bench.peers.celery",
            "worker",
            "--pool",
            "solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        ]
        return [[*cmd, "-n", f"bench{i}@%h"] for i in range(processes)]


def make() -> CeleryPeer:
    return CeleryPeer()
