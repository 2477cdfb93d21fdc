"""Fences and versions only grow across Redis losses (chalicelib/service/epoch.py).

Each test runs its own redis-server (AOF, `appendfsync always` so that the test decides
exactly which writes a restart loses) so that it can stop it, cut its AOF back to an
earlier moment, and start it again: a new server process, as after a crash.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.redis_server import redis_server_binary
from chalicelib.core.settings import Settings
from chalicelib.queue.locks import DistributedLock, LockScripts
from chalicelib.service import deps
from chalicelib.service.epoch import EPOCH_SPAN, split
from chalicelib.service.recorder import Recorder
from chalicelib.service.recover import recover
from tests.helpers import wait_until
from workers.devstack import embedded


class OwnRedis:
    """A redis-server this test owns: stop it, edit its AOF, start it again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: embedded.redis_answers(self.url), what="own redis-server answers")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # kill -9: the AOF holds what was fsynced, nothing more
        self.proc.wait()

    def aof(self) -> Path:
        [incr] = sorted((self.folder / "appendonlydir").glob("*.incr.aof"))
        return incr

    def aof_size(self) -> int:
        return self.aof().stat().st_size

    def cut_aof(self, size: int) -> None:
        """Forget every write after the AOF had ``size`` bytes (a lost tail)."""
        with self.aof().open("r+b") as f:
            f.truncate(size)


@pytest.fixture
def own(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.stop()


@pytest.fixture
def svc(own: OwnRedis, settings: Settings) -> Iterator[deps.Services]:
    services = deps.build(dataclasses.replace(settings, redis_url=own.url), pool_size=4)
    yield services
    services.close()


def _restart_losing_tail(own: OwnRedis, size: int) -> None:
    own.stop()
    own.cut_aof(size)
    own.start()


def _history(svc: deps.Services, task_id: str) -> list[str]:
    """The task's recorded events, oldest first (the query orders by seq)."""
    return [r["event"] for r in svc.store.history(task_id)]


def test_a_redis_that_lost_its_tail_never_hands_out_a_fence_twice(
    own: OwnRedis, svc: deps.Services
) -> None:
    task = svc.tasks.enqueue("t", {})
    before_claim = own.aof_size()
    [first] = svc.queue.claim(["default"], "w1", 1, 60_000).leases
    Recorder(svc.queue, svc.store, "r").drain()
    assert first.fence == 1

    # Redis restarts without the claim (its last writes never reached the disk); the
    # record has it, and the worker holding fence 1 may still be running.
    _restart_losing_tail(own, before_claim)
    assert svc.redis.hget(svc.keys.queue("default").task(task["id"]), "st") == b"queued"

    [second] = svc.queue.claim(["default"], "w2", 1, 60_000).leases
    assert second.task_id == task["id"]
    assert second.fence > first.fence
    assert split(second.fence) == (1, 1)  # epoch 1, first lease in it

    # The re-run is recorded, not discarded as a replay of (task, seq) keys the record
    # already has, and the history says why it ran again.
    Recorder(svc.queue, svc.store, "r").drain()
    assert _history(svc, task["id"]) == ["claimed", "redis_restarted", "claimed"]
    row = svc.store.get_task(task["id"])
    assert row is not None and row["fence"] == second.fence and row["attempts"] == 1


def test_a_plain_restart_also_starts_a_new_epoch_once(own: OwnRedis, svc: deps.Services) -> None:
    svc.tasks.enqueue("t", {})
    svc.tasks.enqueue("t", {})
    [a] = svc.queue.claim(["default"], "w", 1, 60_000).leases
    own.stop()
    own.start()  # nothing lost, but nothing tells us so: a new epoch, harmless
    [b] = svc.queue.claim(["default"], "w", 1, 60_000).leases
    assert split(a.fence)[0] == 0 and split(b.fence)[0] == 1
    # Another process (its own clients, its own script cache view) agrees on the epoch
    # and does not raise it again for the same server.
    other = deps.build(svc.settings, pool_size=2)
    try:
        svc.tasks.enqueue("t", {})
        [c] = other.queue.claim(["default"], "w", 1, 60_000).leases
        assert split(c.fence)[0] == 1
    finally:
        other.close()


def test_recover_after_total_loss_outranks_leases_the_record_never_saw(
    own: OwnRedis, svc: deps.Services
) -> None:
    task = svc.tasks.enqueue("t", {})
    # Leased with no recorder running: the record still says fence 0, attempt 0.
    [held] = svc.queue.claim(["default"], "w1", 1, 60_000).leases
    assert held.fence == 1
    own.stop()
    for f in (own.folder / "appendonlydir").iterdir():
        f.unlink()  # Redis comes back empty
    own.start()

    report = recover(svc.tasks)
    assert report.restored == 1 and report.epoch is not None and report.epoch >= 1
    [again] = svc.queue.claim(["default"], "w2", 1, 60_000).leases
    assert again.task_id == task["id"]
    assert again.fence > held.fence
    assert split(again.fence)[0] >= report.epoch  # the restart may have raised it again


def test_lock_fences_start_above_every_earlier_epoch(own: OwnRedis, svc: deps.Services) -> None:
    scripts = LockScripts(svc.redis, svc.queue.on_new_server)
    lock = DistributedLock(scripts, svc.keys, "invoice:1", ttl_s=30)
    svc.tasks.enqueue("t", {})  # the deployment's first check: epoch 0 published
    before = own.aof_size()
    first = lock.acquire()
    assert first == 1
    _restart_losing_tail(own, before)  # the acquisition is lost with the tail
    second = DistributedLock(scripts, svc.keys, "invoice:1", ttl_s=30).acquire()
    assert second > first and split(second) == (1, 1)


def test_large_numbers_reach_the_record_exactly(svc: deps.Services) -> None:
    # cjson writes 14 significant digits; a fence of epoch 2**20 has 16. Every event
    # (the general emit path of a failure included) must carry it exactly, or the
    # recorder's batch is refused as a bigint.
    svc.tasks.enqueue("t", {})  # registers the queue (publishes epoch 0)
    svc.queue.publish_epoch(2**20)
    task = svc.tasks.enqueue("t", {}, max_attempts=3)
    leases = svc.queue.claim(["default"], "w", 2, 60_000).leases
    lease = next(le for le in leases if le.task_id == task["id"])
    assert lease.fence == 2**20 * EPOCH_SPAN + 1
    svc.queue.fail("default", lease.task_id, lease.lease_token, "boom")
    assert Recorder(svc.queue, svc.store, "r").drain() > 0
    row = svc.store.get_task(task["id"])
    assert row is not None and row["status"] == "retrying" and row["fence"] == lease.fence
    assert row["version"] > 2**20 * EPOCH_SPAN


def test_epoch_span_matches_the_scripts() -> None:
    lib = (Path(__file__).parents[2] / "chalicelib" / "queue" / "lua" / "_lib.lua").read_text()
    assert f"local EPOCH_SPAN = {EPOCH_SPAN}" in lib


def test_nothing_runs_against_a_server_the_record_could_not_check(
    own: OwnRedis, svc: deps.Services
) -> None:
    task = svc.tasks.enqueue("t", {})  # this server process is checked (and says so)
    blind_settings = dataclasses.replace(
        svc.settings, database_url="postgresql://postgres@127.0.0.1:9/x"
    )
    # A process whose PostgreSQL is unreachable may use a server some process checked
    # (it did not restart since, so it lost nothing since)...
    blind = deps.build(blind_settings, pool_size=1)
    try:
        assert blind.queue.depths(["default"])["default"]["queued"] == 1
    finally:
        blind.close()
    # ... but after a restart it cannot tell whether Redis lost writes, so it treats
    # Redis as unreachable and runs nothing there.
    own.stop()
    own.start()
    blind = deps.build(blind_settings, pool_size=1)
    watch = blind.redis.connection_pool.connection_kwargs["redis_connect_func"]
    checks: list[int] = []
    check = watch.check
    watch.check = lambda: (checks.append(1), check())[1]  # counted, still the real check
    try:
        for _ in range(3):
            with pytest.raises(redis.ConnectionError, match="not yet checked against the record"):
                blind.queue.claim(["default"], "w", 1, 60_000)
    finally:
        blind.close()
    # One attempt to reach PostgreSQL; the calls right after it fail at once instead of
    # each waiting for PostgreSQL's timeout again.
    assert checks == [1]
    live = svc.queue.task_hash("default", task["id"])
    assert live is not None and live["st"] == "queued"
