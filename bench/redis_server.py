"""A private redis-server for one bench run: no persistence, noeviction, a free port.

Private so that other users of the shared Redis neither disturb the figures nor see
them (INFO memory is server-wide), and so that FLUSHDB between runs is safe. DTQ uses
database 0; each peer its own database number.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import redis


class RedisServer:
    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="dtq-bench-redis-")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--databases",
                "16",
                "--maxmemory-policy",
                "noeviction",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"{self.binary} did not start") from None
                time.sleep(0.02)
        client.close()

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def version(self) -> str:
        client = redis.Redis(port=self.port)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_ping_us(url: str, count: int = 200) -> float:
    """Median µs of one unpipelined PING (a noise probe of this machine right now)."""
    client = redis.Redis.from_url(url)
    try:
        times = []
        for _ in range(count):
            t = time.perf_counter_ns()
            client.ping()
            times.append((time.perf_counter_ns() - t) / 1000)
        times.sort()
        return times[len(times) // 2]
    finally:
        client.close()


def cpu_probe_ms() -> float:
    """Milliseconds of a fixed pure-Python loop: how much CPU this process gets now."""
    t = time.perf_counter()
    x = 0
    for i in range(2_000_000):
        x += i & 7
    return (time.perf_counter() - t) * 1000


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
