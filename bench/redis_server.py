"""Private redis-servers: one for a bench run, or a local Redis Cluster of N nodes.

:class:`RedisServer`: no persistence, noeviction, a free port. Private so that other
users of the shared Redis neither disturb the figures nor see them (INFO memory is
server-wide), and so that FLUSHDB between runs is safe. DTQ uses database 0; each peer
its own database number.

:class:`LocalCluster`: N ``redis-server`` processes in cluster mode, the slots split
evenly between them (one shard each, no replicas). The ``cluster`` scenario runs on it,
and so do the tests of DTQ under Redis Cluster (``tests/cluster/fixtures.py``).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

import redis


class RedisServer:
    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or redis_server_binary()
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


def redis_server_binary() -> str:
    """The ``redis-server`` on the PATH, else the one the embedded dev stack uses."""
    found = shutil.which("redis-server")
    if found:
        return found
    from workers.devstack import embedded

    return embedded.find_redis_server()[0]


#: Slots of a Redis Cluster (CLUSTER KEYSLOT is in 0 … 16383).
SLOTS = 16384


class LocalCluster:
    """A Redis Cluster of ``shards`` primaries on this machine, started and ready (every
    slot assigned, ``cluster_state:ok`` on every node). Node ``i`` owns the ``i``-th
    equal range of slots. No persistence: a node that is killed loses its data."""

    def __init__(self, shards: int, binary: str | None = None, timeout_s: float = 20.0) -> None:
        if not 1 <= shards <= 100:
            raise ValueError("shards: 1 to 100")
        self.binary = binary or redis_server_binary()
        self.ports = cluster_ports(shards)
        self.dir = tempfile.mkdtemp(prefix="dtq-redis-cluster-")
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for port in self.ports:
                home = os.path.join(self.dir, str(port))
                os.makedirs(home)
                self.procs.append(
                    subprocess.Popen(
                        [
                            self.binary,
                            "--port",
                            str(port),
                            "--bind",
                            "127.0.0.1",
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            "nodes.conf",
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--maxmemory-policy",
                            "noeviction",
                            "--loglevel",
                            "warning",
                        ],
                        cwd=home,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
            self._form(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _form(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        nodes = self.nodes()
        try:
            _poll(lambda: all(_pings(n) for n in nodes), deadline, "the cluster nodes answer")
            for i, node in enumerate(nodes):
                first, last = self.slot_range(i)
                node.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
            for port in self.ports[1:]:
                nodes[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
            _poll(
                lambda: all(
                    n.execute_command("CLUSTER INFO")["cluster_state"] == "ok" for n in nodes
                ),
                deadline,
                "cluster_state:ok on every node",
            )
        finally:
            for node in nodes:
                node.close()

    def slot_range(self, i: int) -> tuple[int, int]:
        """First and last slot of node ``i``."""
        per = SLOTS // len(self.ports)
        return i * per, SLOTS - 1 if i == len(self.ports) - 1 else (i + 1) * per - 1

    def node_of_slot(self, slot: int) -> int:
        """Index of the node that owns ``slot``."""
        return next(i for i in range(len(self.ports)) if slot <= self.slot_range(i)[1])

    @property
    def url(self) -> str:
        """A URL for a cluster client (any node will do: it discovers the others)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def nodes(self) -> list[redis.Redis]:
        """A plain client per node, in slot order (the caller closes them)."""
        return [redis.Redis(port=port) for port in self.ports]

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def cluster_ports(n: int) -> list[int]:
    """Free ports whose cluster bus ports (port + 10000) are free and valid too."""
    found: list[int] = []
    rng = random.Random()
    while len(found) < n:
        port = rng.randrange(20_000, 30_000)
        if port not in found and _port_free(port) and _port_free(port + 10_000):
            found.append(port)
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pings(node: redis.Redis) -> bool:
    try:
        return bool(node.ping())
    except redis.ConnectionError:
        return False


def _poll(ready: Callable[[], bool], deadline: float, what: str) -> None:
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


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
