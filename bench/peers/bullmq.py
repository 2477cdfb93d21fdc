"""BullMQ (Node): a producer process driven over a pipe, workers in their own processes.

The scenarios run in Node (``bullmq_adapter.mjs``): this adapter sends each call to the
producer as one line and waits for its answer, so an enqueue rate counts BullMQ's own
``Queue.add`` / ``Queue.addBulk`` loop, not the pipe (one line per 5,000 or 1,000 jobs).
A latency sample's ``t0`` is taken by the producer just before its ``Queue.add``; only
the enqueue call's duration seen from here includes the pipe (its ``ping`` is reported).
Jobs are removed on completion, the worker runs at concurrency 1, 16 and 100 and the
drain reports the best.

``BENCH_NODE`` names the node binary (default: ``node`` on the PATH); the packages are
in the folder of this venv (``bench.peers.setup`` installs them there with npm).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.peers.base import URL_ENV, Peer, PeerUnavailable
from bench.peers.setup import node_tools

HERE = os.path.dirname(os.path.abspath(__file__))
ADAPTER = os.path.join(HERE, "bullmq_adapter.mjs")
DIR_ENV = "BENCH_BULLMQ_DIR"


def modules_dir() -> str:
    """The folder whose node_modules hold bullmq: this venv's root unless told."""
    return os.environ.get(DIR_ENV) or os.path.dirname(os.path.dirname(sys.executable))


class BullMQPeer(Peer):
    name = "bullmq"
    bulk_supported = True
    #: Drain runs once per worker concurrency; the figure is the best.
    concurrencies = (1, 16, 100)

    def __init__(self) -> None:
        tools = node_tools()
        if isinstance(tools, str):
            raise PeerUnavailable(f"bullmq: skipped, {tools}")
        node = tools[0]
        if not os.path.isdir(os.path.join(modules_dir(), "node_modules", "bullmq")):
            raise PeerUnavailable(f"bullmq: skipped, bullmq is not installed in {modules_dir()}")
        super().__init__()
        self.node = node
        self.concurrency = 1
        self.proc = subprocess.Popen(
            [node, ADAPTER, "serve"],
            env={**os.environ, **self._node_env()},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.call("ping")

    def _node_env(self) -> dict[str, str]:
        return {URL_ENV: self.url, DIR_ENV: modules_dir()}

    def call(self, command: str) -> str:
        """Send one command to the producer; what it answered after ``ok``."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if answer != "ok" and not answer.startswith("ok "):
            raise RuntimeError(f"bullmq producer: {answer or 'exited'} (after {command!r})")
        return answer[3:]

    def pending(self) -> int:
        """Jobs not completed yet (waiting, delayed or active)."""
        return int(self.call("pending"))

    def pipe_us(self, calls: int = 200) -> float:
        """Median µs of one empty round trip to the producer."""
        times = []
        for _ in range(calls):
            t = time.perf_counter_ns()
            self.call("ping")
            times.append((time.perf_counter_ns() - t) / 1000)
        return sorted(times)[len(times) // 2]

    def enqueue_noops(self, n: int) -> None:
        self.call(f"noops {n}")

    def enqueue_noops_bulk(self, n: int) -> None:
        self.call(f"bulk {n}")

    def enqueue_stamp(self, t0_ns: int, *, last: bool = False) -> None:
        self.call(f"stamp {t0_ns}")

    def worker_commands(self, processes: int) -> list[list[str]]:
        cmd = [self.node, ADAPTER, "worker", "--concurrency", str(self.concurrency)]
        return [cmd] * processes

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), **self._node_env()}

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write("close\n")
                self.proc.stdin.flush()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        super().close()


def make() -> BullMQPeer:
    return BullMQPeer()
